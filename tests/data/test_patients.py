from __future__ import annotations

import pytest

from pneumoscan.data.patients import cause, patient_id


@pytest.mark.parametrize(
    "name, patient",
    [
        ("IM-0115-0001.jpeg", "IM-0115"),
        ("NORMAL2-IM-0587-0001.jpeg", "NORMAL2-IM-0587"),
        ("NORMAL2-IM-0587-0001-0002.jpeg", "NORMAL2-IM-0587"),
        ("IM-0629-0001-0002.jpeg", "IM-0629"),
        ("person19_virus_50.jpeg", "person19"),
        ("person1_bacteria_1.jpeg", "person1"),
        ("person1000_bacteria_2931.jpeg", "person1000"),
        ("scan_from_ward.png", "scan_from_ward"),
        ("person19_virus.jpeg", "person19_virus"),
        ("scan01.png", "scan01"),
        ("scan.v2.PNG", "scan.v2"),
        ("1.2.840.113619.2.55.3.12345", "1.2.840.113619.2.55.3.12345"),
        ("1.2.840.113619.2.55.3.12345.dcm", "1.2.840.113619.2.55.3.12345"),
        ("im-0115-0002.jpeg", "IM-0115"),  # one child, whatever the case of the name
        ("normal2-Im-0587-0001.JPEG", "NORMAL2-IM-0587"),
        ("Person19_Virus_51.jpeg", "person19"),
    ],
)
def test_patient_id(name: str, patient: str) -> None:
    assert patient_id(f"/x/y/{name}") == patient


def test_cause() -> None:
    assert cause("person19_virus_50.jpeg") == "virus"
    assert cause("person1_bacteria_1.jpeg") == "bacteria"
    assert cause("IM-0115-0001.jpeg") is None
