"""COCO and LVIS json: the one owner of those formats and of their mapping to Open Images.

- ``json_io``: read / validate / write ground-truth and results json (``CocoGroundTruth``,
  ``CocoResults``), errors as ``file: field: message``;
- ``image_sizes``: image sizes from file headers (``imagesize``) or SIZES.csv;
- ``from_oid``: Open Images CSVs -> COCO / LVIS ground truth;
- ``to_oid``: COCO / LVIS ground truth -> Open Images tables and files;
- ``detections``: detections CSV <-> COCO results.
"""
