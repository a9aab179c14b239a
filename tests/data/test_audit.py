from __future__ import annotations

import shutil
from pathlib import Path

from pneumoscan.data.audit import audit, format_audit
from tests.conftest import write_xray


def test_duplicates_across_patients_and_labels_are_reported(tmp_path: Path) -> None:
    for offset, split in ((0, "train"), (50, "test")):
        for i in range(3):
            write_xray(tmp_path / split / "NORMAL" / f"IM-{i:04d}-0001.png", 0, offset + i)
            write_xray(tmp_path / split / "PNEUMONIA" / f"person{i}_virus_{i}.png", 1, 100 + offset + i)
    train = tmp_path / "train"
    shutil.copy(train / "NORMAL" / "IM-0000-0001.png", train / "NORMAL" / "IM-0000-0002.png")  # one patient: fine
    shutil.copy(train / "NORMAL" / "IM-0001-0001.png", train / "NORMAL" / "IM-0042-0001.png")  # two patients
    shutil.copy(train / "NORMAL" / "IM-0002-0001.png", train / "PNEUMONIA" / "person2_virus_9.png")  # two labels
    report = audit(tmp_path, progress=False)
    assert len(report["duplicate_groups"]) == 3 and report["cross_split_duplicates"] == []
    assert report["cross_patient_duplicates"] == [["train/NORMAL/IM-0001-0001.png", "train/NORMAL/IM-0042-0001.png"],
                                                  ["train/NORMAL/IM-0002-0001.png", "train/PNEUMONIA/person2_virus_9.png"]]
    assert report["label_conflict_duplicates"] == [["train/NORMAL/IM-0002-0001.png",
                                                    "train/PNEUMONIA/person2_virus_9.png"]]
    text = format_audit(report)
    assert "groups: 3 (0 across splits, 2 across patient IDs, 1 with both labels)" in text
    assert "train/NORMAL/IM-0001-0001.png = train/NORMAL/IM-0042-0001.png" in text
    assert "IM-0000-0001.png = " not in text
