"""How the seven error types look in every picture and in the HTML report.

Colours are the Okabe-Ito colour-blind-safe palette, ordered so that neighbours in a stacked bar
differ in lightness; each type also has a hatch (matplotlib), an SVG dash pattern and a one-letter
code written on its boxes, so the types stay apart in greyscale. True positives are drawn solid
black-outlined green ("T"), ground truth solid white ("G").
"""

from __future__ import annotations

from wilddet.evaluation.diagnose import ERROR_TYPES

COLOURS = {"duplicate": "#E69F00", "localization": "#56B4E9", "hierarchy": "#009E73",
           "confusion": "#CC79A7", "class": "#D55E00", "background": "#0072B2",
           "other": "#999999"}
HATCHES = {"duplicate": "", "localization": "//", "hierarchy": "..", "confusion": "xx",
           "class": "\\\\", "background": "--", "other": "++"}
DASHES = {"duplicate": "6 2", "localization": "2 2", "hierarchy": "8 2 2 2",
          "confusion": "1 3", "class": "4 4", "background": "10 3", "other": "3 1 1 1"}
CODES = {"duplicate": "D", "localization": "L", "hierarchy": "H", "confusion": "P",
         "class": "C", "background": "B", "other": "O"}
TRUE_POSITIVE_COLOUR = "#1B9E3A"
GROUND_TRUTH_COLOUR = "#FFFFFF"

assert tuple(COLOURS) == ERROR_TYPES

__all__ = ["CODES", "COLOURS", "DASHES", "GROUND_TRUTH_COLOUR", "HATCHES",
           "TRUE_POSITIVE_COLOUR"]
