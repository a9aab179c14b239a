"""What every message, heading and help says of a DICOM film whose header says it is no plain frontal film
(`decode.not_frontal_view`: a modality other than radiography's, lateral, decubitus, oblique, cross-table, lordotic, axial, tangential or an eponymous projection,
AP or PA among its words or not, as in 'AP LORDOTIC'). Kept apart from `decode` so the CLI's help needs no image
library."""
from __future__ import annotations

NOT_PLAIN_FRONTAL = "not a plain frontal (AP or PA) film; the model reads plain frontal chest X-rays only"  # why
OTHER_VIEW = "of a view other than plain frontal (AP or PA)"  # counts and headings: 'DICOM film(s) {OTHER_VIEW}'
