"""``python -m wilddet`` (used by torchrun: ``torchrun ... -m wilddet train CONFIG``)."""

from wilddet.cli import main

main()
