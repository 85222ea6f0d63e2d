"""Data files shipped with wilddet (see ``openimages/README.md`` for attribution)."""

from pathlib import Path

OPENIMAGES_DIR = Path(__file__).resolve().parent / "openimages"
OID_HIERARCHY_JSON = OPENIMAGES_DIR / "bbox_labels_600_hierarchy.json"
OID_BOXABLE_CLASSES_CSV = OPENIMAGES_DIR / "class-descriptions-boxable.csv"
OID_CHALLENGE_2019_CLASSES_CSV = OPENIMAGES_DIR / "challenge-2019-classes-description-500.csv"
SEED_TABLE2_CSV = OPENIMAGES_DIR / "seed-table2-confusion-pairs.csv"
