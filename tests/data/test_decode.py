"""Tests for pneumoscan.data.decode: every image is generated here, tiny, in tmp_path."""
from __future__ import annotations

import io
import random
import re
import struct
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pneumoscan.data.decode import DEFAULT_MAX_PIXELS, is_dicom, read_film, read_grayscale
from pneumoscan.errors import DecodeOutOfMemory, ImageTooLarge, InputError
from tests.data.builders import (PATIENT, check_error, dcm, dicom_bytes, encode, make_dicom, minmax_u8, png16,
                                 png_header_only, ramp, tiff16, write)


def stretched(data: bytes) -> bool:
    """Whether the film of file `data` is read otherwise than a browser draws it, from the decode that reads it."""
    return read_film(data).stretched


# --------------------------------------------------------------------------- not_frontal_view


@pytest.mark.parametrize("position", ["", None, "CHEST", "UPRIGHT"])
@pytest.mark.parametrize("scheme, code, view", [
    ("SCT", "399067008", "lateral (SCT 399067008)"), ("SCT", "399173006", "left lateral (SCT 399173006)"),
    ("SCT", "399198007", "right lateral (SCT 399198007)"), ("SRT", "R-10232", "right lateral (SRT R-10232)"),
    ("SNM3", "R-10236", "left lateral (SNM3 R-10236)"), ("SCT", "399356000", "right anterior oblique (SCT 399356000)"),
    ("SCT", "399260004", "medial-lateral (SCT 399260004)"), ("SRT", "R-10230", "latero-medial oblique (SRT R-10230)"),
    ("SCT", "399160007", "frontal oblique (SCT 399160007)"), ("SCT", "30730003", "sagittal (SCT 30730003)"),
    ("SRT", "G-A145", "sagittal (SRT G-A145)"), ("SCT", "399061009", "axial (SCT 399061009)"),
    ("SCT", "399196006", "caudo-cranial (SCT 399196006)"), ("SRT", "R-10242", "cranio-caudal (SRT R-10242)"),
    ("SRT", "R-10218", "right anterior oblique (SRT R-10218)"), ("SNM3", "R-10222", "sagittal (SNM3 R-10222)"),
    ("SCT", "399110001", "tangential (SCT 399110001)"), ("SRT", "R-102C2", "tangential (SRT R-102C2)"),
    ("SCT", "399255003", "submentovertical (SCT 399255003)"), ("SRT", "G-A104", "lateral (SRT G-A104)"),
    ("SCT", "399118008", "left lateral (SCT 399118008)"), ("SNM3", "G-5206", "right anterior oblique (SNM3 G-5206)"),
    ("SCT", "399348003", None), ("SCT", "272479007", None), ("SRT", "R-10206", None),  # antero/postero-anterior
    ("99LOCAL", "399173006", None),  # a local scheme's code means what that scheme says
])

def test_a_dicom_without_a_view_position_is_read_by_its_view_code_sequence(
        position: str | None, scheme: str, code: str, view: str | None) -> None:
    """A device that leaves View Position (0018,5101) empty or out, or writes a term of its own there ('CHEST',
    'UPRIGHT': no word of a view), may state the view only as a CID 4010 code in the View Code Sequence (0054,0220):
    such a lateral film was read as of no stated view, and scored as a frontal one."""
    from pneumoscan.data.decode import not_frontal_view, view_reason
    from tests.conftest import with_view_code

    ds = with_view_code(make_dicom(ramp()), scheme, code)
    if position is not None:
        ds.ViewPosition = position
    said = None if view is None else f"DICOM View Code Sequence {view}"
    assert not_frontal_view(dicom_bytes(ds)) == said
    if said is not None:
        assert view_reason(said) == (f"DICOM View Code Sequence {view}: not a plain frontal (AP or PA) film; the model "
                                     "reads plain frontal chest X-rays only, send the frontal film of the study")
    for known, said in (("PA", None), ("AP", None), ("RL", "DICOM View Position RL")):  # the film's view
        ds.ViewPosition = known
        assert not_frontal_view(dicom_bytes(ds)) == said


@pytest.mark.parametrize("position", ["AP R L", "AP L AT", "PA L R", "AP R L SUPINE"])
def test_single_letter_view_position_words_are_not_joined_into_a_view(position: str) -> None:
    """Two View Position words are read as one only where they make a compound the word list holds ('X TABLE'):
    any adjacent pair was joined, and an AP film marked 'R L' (side markers) read as RL, 'L AT' as LAT, and was
    refused."""
    from pneumoscan.data.decode import not_frontal_view

    ds = make_dicom(ramp())
    ds.ViewPosition = position
    assert not_frontal_view(dicom_bytes(ds)) is None


@pytest.mark.filterwarnings("ignore:Invalid value for VR CS")  # lower case, as some devices write it
@pytest.mark.parametrize("position", ["AP SUPINE", "PA ERECT", "AP PORTABLE", "PORTABLE AP", "ap supine", "AP\\PA",
                                      "pa-erect"])
def test_a_view_position_saying_ap_or_pa_among_other_words_is_frontal_whatever_the_view_code(position: str) -> None:
    """A View Position that says AP or PA among other words ('AP SUPINE', 'PORTABLE AP', two values 'AP\\PA') states a
    frontal film: it yielded to a lateral or oblique View Code Sequence, and the frontal film was refused."""
    from pneumoscan.data.decode import not_frontal_view
    from tests.conftest import with_view_code

    for scheme, code in (("SCT", "399173006"), ("SCT", "399135007"), ("SRT", "R-10234")):
        ds = with_view_code(make_dicom(ramp()), scheme, code)
        ds.ViewPosition = position
        assert not_frontal_view(dicom_bytes(ds)) is None


@pytest.mark.filterwarnings("ignore:Invalid value for VR CS")  # lower case, as some devices write it
@pytest.mark.parametrize("position, view", [
    ("XTABLE LATERAL", "XTABLE LATERAL"), ("LEFT LATERAL", "LEFT LATERAL"), ("AP LLD", "AP LLD"),
    ("PA RLD", "PA RLD"), ("ap_lld", "AP LLD"), ("LAO", "LAO"), ("RAO", "RAO"), ("LPO", "LPO"), ("RPO", "RPO"),
    ("SWIMMERS", "SWIMMERS"), ("AP\\LL", "AP LL"), ("PA OBLIQUE", "PA OBLIQUE"), ("RIGHT DECUBITUS", "RIGHT DECUBITUS"),
    ("AP DECUB", "AP DECUB"), ("PA OBL", "PA OBL"), ("OBL", "OBL"), ("SWIMMER", "SWIMMER"), ("SWIMMER'S", "SWIMMER S"),
    ("XTABLE", "XTABLE"), ("CROSS-TABLE", "CROSS TABLE"), ("CROSSTABLE", "CROSSTABLE"), ("AP XTABLE", "AP XTABLE"),
    ("X-TABLE", "X TABLE"), ("X-TABLE AP", "X TABLE AP"), ("X TABLE LATERAL", "X TABLE LATERAL"),
    ("AP LORDOTIC", "AP LORDOTIC"), ("AP AXIAL", "AP AXIAL"), ("PA APICAL", "PA APICAL"),
])
def test_a_view_position_with_a_lateral_decubitus_or_oblique_word_is_refused_by_it(position: str, view: str) -> None:
    """A View Position naming a lateral, decubitus or oblique view among other words, as archives write them (MIMIC-CXR:
    'XTABLE LATERAL', 'AP LLD', 'LAO'), was read as no known term: with no View Code Sequence, or a frontal code there,
    the film was scored as a frontal one (while 'LLD' alone was refused). Such a word decides, over AP or PA and any
    code, and the reason names the View Position's words."""
    from pneumoscan.data.decode import not_frontal_view, view_reason
    from tests.conftest import with_view_code

    ds = make_dicom(ramp())
    ds.ViewPosition = position
    assert not_frontal_view(dicom_bytes(ds)) == f"DICOM View Position {view}"
    assert not_frontal_view(dicom_bytes(with_view_code(ds, "SCT", "399348003"))) == f"DICOM View Position {view}"
    assert view_reason(f"DICOM View Position {view}") == (
        f"DICOM View Position {view}: not a plain frontal (AP or PA) film; the model reads plain frontal chest X-rays "
        "only, send the frontal film of the study")  # 'AP LORDOTIC: not a frontal (AP or PA) film' contradicted itself


def test_the_view_code_table_is_cid_4010s_views_but_ap_pa_and_frontal() -> None:
    """The View Code table holds every code of CID 4010 (DX View) but antero-posterior, postero-anterior and frontal,
    as pydicom's own CID table gives them, and beside each its SNOMED RT twin by pydicom's SCT<->SRT map,
    and the prior SNOMED RT codes CID 4010's notes say receivers may still get (right anterior oblique R-10218,
    sagittal R-10222: such films were read as frontal):
    six such views (medial-lateral, lateral-medial, medial, medio-lateral and latero-medial oblique, frontal oblique)
    were missing, and their films were scored as frontal ones; so was a film coded Sagittal (SCT 30730003, SRT
    G-A145), and one coded axial (a chest's apical lordotic film, as View Position 'AP AXIAL' says it), or by its
    direction, cranio-caudal or caudo-cranial (passed while 'AP AXIAL' was refused); so was one coded tangential
    (the beam grazing the ribs or sternum) or a view of the skull, the foot or the teeth."""
    from pydicom.sr.codedict import codes
    from pydicom.sr.coding import Code

    from pneumoscan.data.decode import NOT_FRONTAL_VIEW_CODES

    frontal = {"399348003", "272479007", "399033003"}  # antero-posterior, postero-anterior, frontal
    cid = {code.value: re.sub(" projection$", "", code.meaning.lower()) for code in codes.CID4010.concepts.values()
           if code.value not in frontal}
    assert cid["30730003"] == "sagittal" and cid["399110001"] == "tangential" and len(cid) == 39
    sct = {code: meaning for code, meaning in NOT_FRONTAL_VIEW_CODES.items()
           if code.isdigit() and code not in ALTERNATIVE_VIEW_CODES}
    assert sct == cid
    prior = {"R-10218": "right anterior oblique", "R-10222": "sagittal"}  # CID 4010's notes 2 and 3: earlier codes
    assert {code: NOT_FRONTAL_VIEW_CODES.get(code) for code in prior} == prior
    srt = {code: meaning for code, meaning in NOT_FRONTAL_VIEW_CODES.items()
           if not code.isdigit() and code not in prior and code not in ALTERNATIVE_VIEW_CODES.values()}
    twins = {code: [twin for twin, said in sct.items() if said == meaning] for code, meaning in srt.items()}
    assert sorted(twin for found in twins.values() for twin in found) == sorted(sct)  # one SRT code per SCT code
    assert all(Code(code, "SRT", srt[code]) == Code(twin, "SCT", srt[code]) for code, (twin,) in twins.items())


ALTERNATIVE_VIEW_CODES = {  # CID 501's other concepts of CID 4010's refused views: SNOMED CT -> its SNOMED RT code
    "49370004": "G-A104", "21114003": "G-A472", "24422004": "G-A147", "399118008": "G-5223", "399297009": "G-5222",
    "399012007": "G-5220", "399300004": "G-5221", "399074003": "G-5207", "399108003": "G-5206", "399136008": "G-5209",
    "399075002": "G-5208", "399268006": "G-5224", "399159002": "G-5225", "399089007": "G-5210", "399273000": "G-5212"}


def test_the_view_code_table_holds_cid_501s_other_codes_of_the_refused_views() -> None:
    """CID 501 (Volumetric View Description), which holds CID 4010, gives the refused views as other SNOMED concepts
    too (the general qualifiers Lateral, Oblique and Axial, nuclear medicine's projections: 'Left lateral projection'
    SCT 399118008, SRT G-5223); a film so coded, with no AP or PA word in its View Position, was scored as a frontal
    one. Each is held under both codes, with its refused view's meaning, as pydicom's tables give them."""
    from pydicom.sr._snomed_dict import mapping
    from pydicom.sr.codedict import codes

    from pneumoscan.data.decode import NOT_FRONTAL_VIEW_CODES

    said = {concept.value: concept.meaning for concept in codes.CID501.concepts.values()}
    refused = set(NOT_FRONTAL_VIEW_CODES.values())
    for sct, srt in ALTERNATIVE_VIEW_CODES.items():
        meaning = re.sub(" projection$", "", said[sct].lower())
        assert mapping["SCT"][sct] == srt and meaning in refused, (sct, said[sct])
        assert NOT_FRONTAL_VIEW_CODES[sct] == NOT_FRONTAL_VIEW_CODES[srt] == meaning


def with_code(item_keyword: str, scheme: str, code: str, meaning: str = "as the device wrote it"):
    """A sequence `item_keyword` of one code item."""
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code, scheme, meaning
    return [item]


@pytest.mark.parametrize("scheme, code, view", [
    ("SCT", "102536004", "left lateral decubitus (SCT 102536004)"),
    ("SCT", "102535000", "right lateral decubitus (SCT 102535000)"),
    ("SRT", "F-10318", "lateral decubitus (SRT F-10318)"), ("SNM3", "F-10319", "left lateral decubitus (SNM3 F-10319)"),
    ("SCT", "260450008", "lordotic (SCT 260450008)"), ("SRT", "R-40799", "lordotic (SRT R-40799)"),
    ("SCT", "40199007", None), ("SCT", "1240000", None),  # supine, prone: a frontal film lying on its back or front
])
@pytest.mark.parametrize("where", ["nested", "top level"])
@pytest.mark.parametrize("position", ["AP", "", None])
def test_a_decubitus_patient_orientation_modifier_refuses_the_film_whatever_its_view_position(
        scheme: str, code: str, view: str | None, where: str, position: str | None) -> None:
    """A device may state a decubitus film only by its Patient Orientation Modifier (CID 20), in the Patient
    Orientation Code Sequence (0054,0410) item, with View Position AP: it was scored as a frontal film, while 'AP LLD'
    in the View Position was refused."""
    from pneumoscan.data.decode import not_frontal_view, view_reason

    ds = make_dicom(ramp())
    if position is not None:
        ds.ViewPosition = position
    modifiers = with_code("PatientOrientationModifierCodeSequence", scheme, code)
    if where == "nested":
        orientation = with_code("PatientOrientationCodeSequence", "SCT", "102538003", "recumbent")
        orientation[0].PatientOrientationModifierCodeSequence = modifiers
        ds.PatientOrientationCodeSequence = orientation
    else:
        ds.PatientOrientationModifierCodeSequence = modifiers
    said = None if view is None else f"DICOM Patient Orientation Modifier {view}"
    assert not_frontal_view(dicom_bytes(ds)) == said
    if said is not None:
        assert view_reason(said).startswith(f"{said}: not a plain frontal (AP or PA) film")


@pytest.mark.parametrize("scheme, code, view", [("DCM", "111069", "cross-table (DCM 111069)"),
                                                ("SCT", "272476000", "transthoracic (SCT 272476000)"),
                                                ("SRT", "R-40885", "transthoracic (SRT R-40885)"),
                                                ("SNM3", "R-40885", "transthoracic (SNM3 R-40885)"),
                                                ("SCT", "286866000", None)])  # mouth closed: no view of its own
def test_a_cross_table_view_modifier_refuses_a_frontal_film(scheme: str, code: str, view: str | None) -> None:
    """A View Modifier Code Sequence (0054,0222) in a View Code Sequence item saying cross-table (CID 4011) makes a
    film taken across the table, never an erect or supine frontal one; it was not read, and with View Position PA and
    a postero-anterior code the film was scored as frontal. Transthoracic was read as its SNOMED CT code alone."""
    from pneumoscan.data.decode import not_frontal_view
    from tests.conftest import with_view_code

    ds = with_view_code(make_dicom(ramp()), "SCT", "272479007")  # postero-anterior
    ds.ViewPosition = "PA"
    ds.ViewCodeSequence[0].ViewModifierCodeSequence = with_code("ViewModifierCodeSequence", scheme, code)
    assert not_frontal_view(dicom_bytes(ds)) == (None if view is None else f"DICOM View Modifier {view}")


@pytest.mark.parametrize("code", ["399196006", "399162004"])  # cephalad, caudad
def test_a_tilted_beam_view_modifier_passes_an_ap_or_pa_film(code: str) -> None:
    """CID 4011's cephalad and caudad say which way the beam was tilted, not by how much, and a small cephalad tilt
    is common on a portable AP film: an AP or PA film so modified passes (an AP axial film is refused by its words,
    its axial view code or its lordotic modifier)."""
    from pneumoscan.data.decode import not_frontal_view
    from tests.conftest import with_view_code

    for position, view in (("AP", "399348003"), ("PA", "272479007")):
        ds = with_view_code(make_dicom(ramp()), "SCT", view)
        ds.ViewCodeSequence[0].ViewModifierCodeSequence = with_code("ViewModifierCodeSequence", "SCT", code)
        for said in (position, ""):  # an empty View Position: the view code and its modifier alone decide (the same
            ds.ViewPosition = said  # SNOMED codes are CID 4010's caudo-cranial and cranio-caudal views)
            assert not_frontal_view(dicom_bytes(ds)) is None, said
        ds.ViewPosition = "AP AXIAL"
        assert not_frontal_view(dicom_bytes(ds)) == "DICOM View Position AP AXIAL"


@pytest.mark.parametrize("position", ["", None, "CHEST"])
@pytest.mark.parametrize("view, tilt", [(("SCT", "399348003"), ("SCT", "399196006")),  # antero-posterior, cephalad
                                        (("SRT", "R-40888"), ("SRT", "R-10242")),  # postero-anterior, caudad
                                        (("SCT", "399033003"), ("SNM3", "R-10244")),  # frontal, cephalad
                                        # postero-anterior as an earlier CID 4010 coded it, which devices still write
                                        (("SNM3", "R-10214"), ("SNM3", "R-10244")),
                                        # CID 501's anterior and posterior projections: frontal views coded otherwise
                                        (("SCT", "399321004"), ("SCT", "399196006")),
                                        (("SRT", "G-5216"), ("SRT", "R-10242"))])
def test_a_tilt_written_as_a_view_code_item_of_its_own_beside_a_frontal_view_passes(
        position: str | None, view: tuple[str, str], tilt: tuple[str, str]) -> None:
    """CID 4011's cephalad and caudad are the SNOMED codes of CID 4010's caudo-cranial and cranio-caudal views. A device
    that writes the tilt as a View Code Sequence item of its own, beside the AP or PA item, rather than nested in its
    View Modifier Code Sequence, states an AP or PA film tilted, as a radiographer reads it: it was refused as a
    caudo-cranial view, while the same code nested passed. Alone, or beside a lateral item, the view is refused."""
    from pydicom.dataset import Dataset

    from pneumoscan.data.decode import not_frontal_view

    def coded(*codes: tuple[str, str]) -> bytes:
        ds = make_dicom(ramp())
        if position is not None:
            ds.ViewPosition = position
        ds.ViewCodeSequence = [Dataset() for _ in codes]
        for item, (scheme, code) in zip(ds.ViewCodeSequence, codes):
            item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code, scheme, "as the device wrote it"
        return dicom_bytes(ds)

    assert not_frontal_view(coded(view, tilt)) is None
    assert not_frontal_view(coded(tilt, view)) is None
    axial = "cranio-caudal" if tilt[1] == "R-10242" else "caudo-cranial"
    assert not_frontal_view(coded(tilt)) == f"DICOM View Code Sequence {axial} ({tilt[0]} {tilt[1]})"
    assert not_frontal_view(coded(view, tilt, ("SCT", "399173006"))) == \
        "DICOM View Code Sequence left lateral (SCT 399173006)"


@pytest.mark.parametrize("modality, said", [
    ("CT", "CT (Computed Tomography)"), ("MG", "MG (Mammography)"), ("RF", "RF (Radiofluoroscopy)"),
    ("us", "US (Ultrasound)"), ("XA", "XA (X-Ray Angiography)"), ("PX", "PX (Panoramic X-Ray)"),
    ("DX", None), ("CR", None), ("RG", None), ("OT", None), ("PA", None), ("", None), ("CHEST", None),
])
@pytest.mark.filterwarnings("ignore:Invalid value for VR CS")  # lower case, as some devices write it
def test_a_dicom_whose_modality_is_no_radiographs_is_refused_by_it(modality: str, said: str | None) -> None:
    """A DICOM of a CID 33 modality other than radiography (a CT localizer, a mammogram, a fluoroscopy spot, an
    ultrasound) was scored as a chest X-ray whenever its View Position said PA or nothing: `predict` gave a CT or MG
    film a P(pneumonia). Its Modality refuses it, said with CID 33's meaning, whatever its View Position; CR, DX, RG,
    OT, PA (photoacoustic, or a view written there), an empty or a local value pass. It was told to 'send the frontal
    film of the study', which a CT or mammography study does not hold: it is told to send a frontal chest X-ray."""
    from pneumoscan.data.decode import not_frontal_view, view_reason

    ds = make_dicom(ramp())
    ds.Modality = modality
    for position in (None, "PA", "LL"):
        if position is not None:
            ds.ViewPosition = position
        expected = f"DICOM Modality {said}" if said is not None else \
            None if position != "LL" else "DICOM View Position LL"
        assert not_frontal_view(dicom_bytes(ds)) == expected, position
    if said is not None:  # a CT or mammography study holds no frontal film of the chest to send instead
        assert view_reason(not_frontal_view(dicom_bytes(ds))) == (
            f"DICOM Modality {said}: not a plain frontal (AP or PA) film; the model reads plain frontal chest X-rays "
            "only, send a frontal chest X-ray (CR or DX)")
    ds.Modality, ds.ViewPosition = "DX", "LL"
    assert view_reason(not_frontal_view(dicom_bytes(ds))).endswith(", send the frontal film of the study")


@pytest.mark.parametrize("modality", ["PR", "KO", "SR", "DOC", "ECG"])
def test_a_film_whose_modality_names_an_object_without_a_picture_is_not_refused_by_it(modality: str) -> None:
    """A presentation state's 'PR' (or another term of an object that holds no picture: key object selection,
    report, document, waveform) copied onto a film is a mislabel that says nothing of what the film shows: a PA film
    labelled PR was refused as 'DICOM Modality PR (Presentation State): not a plain frontal (AP or PA) film' and audit
    said to remove it. Its View Position and codes decide, as for an empty Modality; every such term is CID 33's."""
    from pydicom.sr.codedict import codes

    from pneumoscan.data.decode import _NO_PICTURE, not_frontal_view

    assert _NO_PICTURE <= {concept.value for concept in codes.CID33.concepts.values()}
    ds = make_dicom(ramp())
    ds.Modality = modality
    assert not_frontal_view(dicom_bytes(ds)) is None
    ds.ViewPosition = "PA"
    assert not_frontal_view(dicom_bytes(ds)) is None
    ds.ViewPosition = "LL"
    assert not_frontal_view(dicom_bytes(ds)) == "DICOM View Position LL"


def test_the_modifier_table_is_cid_20s_and_cid_4011s_non_frontal_codes() -> None:
    """The modifier table holds CID 20's lateral decubitus and lordotic positions and CID 4011's cross-table and
    transthoracic view modifiers, as pydicom's CID tables give them, each SNOMED code under SCT and its SNOMED RT twin
    (pydicom's SCT<->SRT map) under SRT and SNM3: transthoracic was read as SCT alone, SNM3 not at all (an AP film
    coded SNM3 F-10319, left lateral decubitus, was scored as frontal)."""
    from pydicom.sr._snomed_dict import mapping
    from pydicom.sr.codedict import codes

    from pneumoscan.data.decode import NOT_FRONTAL_MODIFIERS

    wanted = {("CID20", "decubitus|lordotic"): "Patient Orientation Modifier",
              ("CID4011", "crosstable|transthoracic"): "View Modifier"}
    expected: dict[tuple[str, str], tuple[str, str]] = {}
    for (cid, words), element in wanted.items():
        for concept in getattr(codes, cid).concepts.values():
            if re.search(words, concept.meaning, re.IGNORECASE):
                meaning = "cross-table" if concept.value == "111069" else concept.meaning.lower()
                expected[concept.scheme_designator, concept.value] = (meaning, element)
                if concept.scheme_designator == "SCT":
                    for scheme in ("SRT", "SNM3"):
                        expected[scheme, mapping["SCT"][concept.value]] = (meaning, element)
    assert len(expected) == 5 * 3 + 1  # four positions and transthoracic in three schemes, crosstable in DCM
    assert NOT_FRONTAL_MODIFIERS == expected


@pytest.mark.parametrize("position", ["AP", "PA"])
def test_a_cid_4012_projection_eponymous_name_refuses_the_film_and_a_local_code_does_not(position: str) -> None:
    """A Projection Eponymous Name Code Sequence (0018,5104) of CID 4012 names a special projection (Twining, the
    swimmer's lateral; Fleischner, the apical lordotic film), never a plain frontal chest film, whatever the View
    Position; it is said with the table's meaning, under its element, whatever the device wrote. Any code there refused
    the film, a site's local one too (PA with '99LOCAL CHESTPA', 'Chest PA': 'not a frontal film'), and a local code
    with a space in its value ('99RAD LORD 1') was said to be a View Position's."""
    from pneumoscan.data.decode import not_frontal_view

    ds = make_dicom(ramp())
    ds.ViewPosition = position
    for scheme, code, wrote, said in (("SCT", "399125001", "Twining", "Twining (SCT 399125001)"),
                                      ("SRT", "R-10274", "Fleischner", "Fleischner (SRT R-10274)"),
                                      ("SNM3", "R-102AC", "swimmer", "Twining (SNM3 R-102AC)")):
        ds.ProjectionEponymousNameCodeSequence = with_code("ProjectionEponymousNameCodeSequence", scheme, code, wrote)
        assert not_frontal_view(dicom_bytes(ds)) == f"DICOM Projection Eponymous Name {said}"
    for scheme, code in (("99LOCAL", "CHESTPA"), ("99RAD", "LORD 1"), ("SCT", "44491008"), ("SRT", "")):
        ds.ProjectionEponymousNameCodeSequence = with_code("ProjectionEponymousNameCodeSequence", scheme, code)
        assert not_frontal_view(dicom_bytes(ds)) is None, (scheme, code)  # 44491008: fluoroscopy, no projection


@pytest.mark.parametrize("module", ["pydicom.sr._snomed_dict", "pydicom.sr.codedict"])
def test_the_view_checks_run_without_pydicom_s_code_tables(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    """The eponym table is built from pydicom's code tables (its SNOMED map is private): were one gone, the error
    was swallowed by the view read as a whole, and a film whose View Code Sequence says lateral read as frontal.
    Without them no eponym is known, and every other view check still runs."""
    import sys

    from pneumoscan.data import decode
    from tests.conftest import with_view_code

    ds = with_view_code(make_dicom(ramp()), "SCT", "399173006")  # left lateral, no View Position
    ds.ProjectionEponymousNameCodeSequence = with_code("ProjectionEponymousNameCodeSequence", "99LOCAL", "CHEST")
    monkeypatch.setitem(sys.modules, module, None)  # import of it raises ImportError
    decode._eponyms.cache_clear()
    try:
        assert decode.not_frontal_view(dicom_bytes(ds)) == "DICOM View Code Sequence left lateral (SCT 399173006)"
    finally:
        decode._eponyms.cache_clear()


@pytest.mark.parametrize("codes, view", [
    ([("SCT", "399348003"), ("SCT", "399173006")], "left lateral (SCT 399173006)"),  # frontal first, lateral second
    ([("99LOCAL", "LAT"), ("SRT", "R-10232")], "right lateral (SRT R-10232)"),
    ([("SCT", "399348003"), ("SCT", "272479007")], None),
])
def test_every_view_code_sequence_item_is_read_and_a_non_frontal_one_refuses(codes: list[tuple[str, str]],
                                                                            view: str | None) -> None:
    """Only the first View Code Sequence item was read: a film coded antero-posterior and left lateral (two items)
    was scored as frontal. Any item's lateral or oblique code refuses it: two stated views make no sure frontal one."""
    from pneumoscan.data.decode import not_frontal_view

    ds = make_dicom(ramp())
    ds.ViewCodeSequence = [with_code("ViewCodeSequence", scheme, code)[0] for scheme, code in codes]
    assert not_frontal_view(dicom_bytes(ds)) == (None if view is None else f"DICOM View Code Sequence {view}")


# --------------------------------------------------------------------------- is_dicom


def test_is_dicom_by_content() -> None:
    assert is_dicom(b"\0" * 128 + b"DICM")
    assert is_dicom(b"\0" * 128 + b"DICM" + b"rest")
    assert not is_dicom(b"\0" * 128 + b"DICX")
    assert not is_dicom(b"\0" * 131)
    assert not is_dicom(b"")
    assert DEFAULT_MAX_PIXELS == 150_000_000


# --------------------------------------------------------------------------- Pillow formats


def test_gray_png_exact_and_bytes_equals_path(tmp_path: Path) -> None:
    a = ramp(lo=10, hi=200)
    data = encode(Image.fromarray(a, "L"), "PNG")
    from_path = read_grayscale(write(tmp_path / "g.png", data))
    from_bytes = read_grayscale(data, name="g.png")
    assert from_path.dtype == np.uint8 and from_path.shape == a.shape
    np.testing.assert_array_equal(from_path, a)  # 8-bit is kept as stored, not stretched
    np.testing.assert_array_equal(from_bytes, from_path)
    assert from_path.flags.writeable


def test_rgb_png_luminance(tmp_path: Path) -> None:
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[0, 0] = (255, 0, 0)
    rgb[0, 1] = (0, 255, 0)
    rgb[0, 2] = (0, 0, 255)
    rgb[1, :] = (100, 100, 100)
    out = read_grayscale(encode(Image.fromarray(rgb, "RGB"), "PNG"))
    expected = np.rint(rgb @ np.array([0.299, 0.587, 0.114]))
    assert out.shape == (2, 3)
    assert np.abs(out.astype(int) - expected).max() <= 1


def test_rgba_png_composited_on_black() -> None:
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[..., 3] = [[255, 0], [128, 255]]
    out = read_grayscale(encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    np.testing.assert_array_equal(out, [[200, 0], [100, 200]])


def test_la_png_composited_on_black() -> None:
    la = Image.merge("LA", [Image.fromarray(np.full((2, 2), 240, np.uint8)),
                            Image.fromarray(np.array([[255, 0], [0, 255]], np.uint8))])
    out = read_grayscale(encode(la, "PNG"))
    np.testing.assert_array_equal(out, [[240, 0], [0, 240]])


def test_palette_png() -> None:
    im = Image.new("P", (3, 1))
    im.putpalette([0, 0, 0, 255, 255, 255, 255, 0, 0] + [0] * (256 * 3 - 9))
    im.putdata([0, 1, 2])
    out = read_grayscale(encode(im, "PNG"))
    assert out.shape == (1, 3)
    assert out[0, 0] == 0 and out[0, 1] == 255 and abs(int(out[0, 2]) - 76) <= 1


def test_palette_png_transparent_entry_is_black() -> None:
    im = Image.new("P", (2, 1))
    im.putpalette([255, 255, 255, 255, 255, 255] + [0] * (256 * 3 - 6))
    im.putdata([0, 1])
    out = read_grayscale(encode(im, "PNG", transparency=1))
    np.testing.assert_array_equal(out, [[255, 0]])


def test_16bit_png_scaled_min_to_0_max_to_255() -> None:
    a = ramp(lo=1000, hi=40000, dtype=np.uint16)
    data = encode(Image.fromarray(a), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    out = read_grayscale(data)
    assert out.min() == 0 and out.max() == 255
    np.testing.assert_array_equal(out, minmax_u8(a))


def test_16bit_scaling_matches_float64_arithmetic() -> None:
    """The float32 path for 16-bit images (half the memory of float64) gives the float64 result."""
    a = np.random.default_rng(0).integers(0, 65536, (300, 300)).astype(np.uint16)
    reference = np.rint((a.astype(np.float64) - a.min()) * (255.0 / (float(a.max()) - a.min()))).astype(np.uint8)
    out = read_grayscale(encode(Image.fromarray(a), "PNG"))
    assert np.mean(out != reference) < 1e-3 and np.abs(out.astype(int) - reference).max() <= 1


def test_16bit_constant_image_is_zeros() -> None:
    out = read_grayscale(encode(Image.fromarray(np.full((4, 5), 3000, np.uint16)), "PNG"))
    np.testing.assert_array_equal(out, np.zeros((4, 5), np.uint8))


def test_16bit_tiff(tmp_path: Path) -> None:
    a = ramp(lo=50, hi=4095, dtype=np.uint16)
    path = write(tmp_path / "x.tif", encode(Image.fromarray(a), "TIFF"))
    np.testing.assert_array_equal(read_grayscale(path), minmax_u8(a))


def test_multi_page_tiff_is_refused(tmp_path: Path) -> None:
    pages = [Image.fromarray(ramp(lo=0, hi=255, dtype=np.uint8)) for _ in range(3)]
    path = tmp_path / "stack.tif"
    pages[0].save(path, save_all=True, append_images=pages[1:])
    with pytest.raises(InputError, match=r"stack\.tif: multi-page TIFF \(3 pages\) is not supported"):
        read_grayscale(path)


def test_bmp() -> None:
    a = ramp()
    np.testing.assert_array_equal(read_grayscale(encode(Image.fromarray(a, "L"), "BMP")), a)


def test_cmyk_jpeg() -> None:
    im = Image.new("CMYK", (16, 8), (0, 0, 0, 0))  # no ink: white
    im.paste((0, 0, 0, 255), (0, 0, 8, 8))  # left half full black ink
    out = read_grayscale(encode(im, "JPEG", quality=95))
    assert out.shape == (8, 16)
    assert out[:, :6].mean() < 20 and out[:, 10:].mean() > 235


def test_progressive_jpeg() -> None:
    a = np.kron(np.array([[30, 220], [120, 60]], np.uint8), np.ones((16, 16), np.uint8))
    data = encode(Image.fromarray(a, "L"), "JPEG", quality=95, progressive=True)
    assert Image.open(io.BytesIO(data)).info.get("progressive")
    out = read_grayscale(data)
    assert out.shape == a.shape
    assert np.abs(out.astype(int) - a).mean() < 3


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize(("orientation", "k"), [(6, -1), (8, 1), (3, 2)])
def test_exif_orientation(fmt: str, orientation: int, k: int) -> None:
    a = np.zeros((16, 32), np.uint8)  # wide, with one bright corner block: asymmetric
    a[:8, :8] = 255
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = read_grayscale(encode(Image.fromarray(a, "L"), fmt, exif=exif, **({"quality": 95} if fmt == "JPEG" else {})))
    expected = np.rot90(a, k)  # 6: rotate 90 clockwise to display; 8: counter-clockwise; 3: 180
    assert out.shape == expected.shape
    assert np.abs(out.astype(int) - expected).mean() < 4


def test_wrong_extension_png_named_jpg(tmp_path: Path) -> None:
    a = ramp()
    path = write(tmp_path / "scan.jpg", encode(Image.fromarray(a, "L"), "PNG"))
    np.testing.assert_array_equal(read_grayscale(path), a)


@pytest.fixture(scope="module")
def big_jpeg() -> bytes:
    rng = np.random.default_rng(0)
    a = (rng.random((40, 50)) * 255).astype(np.uint8)
    a = np.kron(a, np.ones((20, 20), np.uint8))  # 800 x 1000 blocks
    return encode(Image.fromarray(a, "L").convert("RGB"), "JPEG", quality=90)


@pytest.mark.parametrize("draft", [100, 224, 300, 399, 400, 401, 799, 800])
def test_draft_size_smaller_but_never_below(big_jpeg: bytes, draft: int) -> None:
    full = read_grayscale(big_jpeg)
    out = read_grayscale(big_jpeg, draft_size=draft)
    assert full.shape == (800, 1000)
    assert out.ndim == 2 and out.dtype == np.uint8
    assert min(out.shape) >= draft
    if draft <= 400:
        assert out.shape[0] < 800 and out.shape[1] < 1000
        # The reduced decode is the same picture: compare with block means of the full one.
        f = 800 // out.shape[0]
        ref = full.reshape(out.shape[0], f, out.shape[1], f).mean(axis=(1, 3))
        assert np.abs(out.astype(float) - ref).mean() < 4


def test_draft_size_larger_than_image_and_non_jpeg_keep_size(big_jpeg: bytes) -> None:
    assert read_grayscale(big_jpeg, draft_size=5000).shape == (800, 1000)
    png = encode(Image.fromarray(np.zeros((300, 200), np.uint8)), "PNG")
    assert read_grayscale(png, draft_size=50).shape == (300, 200)


# --------------------------------------------------------------------------- errors


def test_zero_byte_file(tmp_path: Path) -> None:
    path = write(tmp_path / "empty.jpg", b"")
    with pytest.raises(InputError) as exc:
        read_grayscale(path)
    assert "empty" in check_error(exc, str(path))
    with pytest.raises(InputError) as exc:
        read_grayscale(b"")
    check_error(exc, "<upload>")


def test_truncated_jpeg(tmp_path: Path, big_jpeg: bytes) -> None:
    path = write(tmp_path / "cut.jpg", big_jpeg[: len(big_jpeg) // 2])
    with pytest.raises(InputError) as exc:
        read_grayscale(path)
    assert "truncated" in check_error(exc, str(path))


def test_truncated_png() -> None:
    data = encode(Image.fromarray(ramp(h=64, w=64)), "PNG")
    with pytest.raises(InputError) as exc:
        read_grayscale(data[: len(data) - 40], name="cut.png")
    check_error(exc, "cut.png")


@pytest.mark.parametrize(
    "content",
    [b"hello, this is not an image\n" * 10, b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\n%%EOF\n"],
)
def test_non_image_file(tmp_path: Path, content: bytes) -> None:
    path = write(tmp_path / "scan.jpg", content)
    with pytest.raises(InputError) as exc:
        read_grayscale(path)
    assert check_error(exc, str(path)) == (
        f"{path}: not a readable image (cannot identify image file); give a JPEG, PNG, TIFF, BMP or DICOM file"
    )


@pytest.mark.parametrize(("fmt", "named"), [("GIF", "GIF"), ("WEBP", "WebP")])
def test_unsupported_pillow_format_refused_by_name(fmt: str, named: str) -> None:
    data = encode(Image.fromarray(ramp()), fmt)
    with pytest.raises(InputError) as exc:
        read_grayscale(data, name="a.img")
    assert check_error(exc, "a.img") == (f"a.img: {named} images are not supported; export the X-ray as PNG, JPEG or "
                                         f"DICOM")


def test_a_file_name_that_is_not_utf8_is_named_escaped_not_with_a_space(tmp_path: Path) -> None:
    """`r\xf6ntgen.jpeg` from a Windows share was named `r ntgen.jpeg`, a file that does not exist; `predict` prints
    the name of such a file it reads as `r\\udcf6ntgen.jpeg`."""
    import os

    odd = os.fsdecode(bytes(tmp_path) + b"/r\xf6ntgen.jpeg")
    Path(odd).write_bytes(b"")
    with pytest.raises(InputError) as exc:
        read_grayscale(odd)
    assert str(exc.value) == (f"{tmp_path}/r\\udcf6ntgen.jpeg: empty file (0 bytes); give a JPEG, PNG, TIFF, BMP "
                              f"or DICOM file")


def test_missing_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.png"
    with pytest.raises(InputError) as exc:
        read_grayscale(path)
    assert "not found" in check_error(exc, str(path))


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError) as exc:
        read_grayscale(tmp_path)
    assert "directory" in check_error(exc, str(tmp_path))


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_decompression_bomb_header() -> None:
    # 100000 x 100000: Pillow's own guard fires inside Image.open.
    with pytest.raises(InputError) as exc:
        read_grayscale(png_header_only(100_000, 100_000), name="bomb.png")
    assert "too large" in check_error(exc, "bomb.png")
    # 12000 x 12000 = 144 M: under Pillow's hard cap, so our max_pixels check must catch it.
    with pytest.raises(InputError) as exc:
        read_grayscale(png_header_only(12_000, 12_000), name="bomb2.png", max_pixels=100_000_000)
    assert "too large" in check_error(exc, "bomb2.png") and "limit 100000000" in str(exc.value)
    assert "raise the pixel limit" not in str(exc.value)  # no CLI option or service setting raises it


def _claiming(fmt: str, width: int, height: int) -> bytes:
    """A small `fmt` file whose header is edited to claim width x height (PNG: `png_header_only`)."""
    if fmt == "PNG":
        return png_header_only(width, height)
    data = bytearray(encode(Image.fromarray(ramp(h=8, w=8)), fmt))
    if fmt == "BMP":
        data[18:26] = width.to_bytes(4, "little") + height.to_bytes(4, "little")
    else:  # JPEG: the SOF0 segment's height and width
        sof = data.index(b"\xff\xc0") + 5
        data[sof:sof + 4] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "JPEG"])
def test_an_image_over_pillows_cap_gets_the_one_refusal(fmt: str) -> None:
    """14,000 x 14,000 (196 MP) is over Pillow's cap (~179 MP), which fires in Image.open before pneumoscan's 150 MP
    check, and was refused in Pillow's words ("could be decompression bomb DOS attack", limit 178956970)."""
    under_pillows_cap = read_error(_claiming(fmt, 12_500, 12_500))
    assert "12500 x 12500 = 156250000 pixels, limit 150000000" in under_pillows_cap
    message = read_error(_claiming(fmt, 14_000, 14_000))
    assert message == under_pillows_cap.replace("12500 x 12500 = 156250000", "14000 x 14000 = 196000000")
    with pytest.raises(ImageTooLarge) as exc:  # a limit raised over Pillow's cap: the cap is the limit named
        read_grayscale(_claiming(fmt, 14_000, 14_000), name="big", max_pixels=300_000_000)
    assert f"limit {2 * Image.MAX_IMAGE_PIXELS})" in str(exc.value)


def read_error(data: bytes) -> str:
    """The message of the ImageTooLarge `read_grayscale` raises for `data`, named 'big'."""
    with pytest.raises(ImageTooLarge) as exc:
        read_grayscale(data, name="big")
    return check_error(exc, "big")


def test_decompression_bomb_warning_as_error_stays_input_error() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(InputError) as exc:
            read_grayscale(png_header_only(10_000, 10_000), name="warn.png")
    check_error(exc, "warn.png")


@pytest.mark.parametrize("kind", ["PNG", "JPEG", "TIFF"])
def test_a_file_whose_header_is_cut_short_or_damaged_is_not_called_another_format(kind: str) -> None:
    """A PNG cut after its signature or with a broken IHDR checksum, a JPEG cut after its first marker and a TIFF cut
    in its first directory said 'cannot identify image file; give a JPEG, PNG, TIFF, BMP or DICOM file', as a page
    of text does: the user was sent to convert a file already in a format read. They name it, and the damage."""
    data = encode(Image.fromarray(ramp()), kind)
    if kind == "PNG":
        cuts = [data[:8], data[:29] + bytes([data[29] ^ 0xFF]) + data[30:]]  # the IHDR's checksum is bytes 29:33
    else:
        cuts = [data[:3] if kind == "JPEG" else data[:30]]
    for cut in cuts:
        with pytest.raises(InputError) as exc:
            read_grayscale(cut, name="film")
        assert check_error(exc, "film") == (f"film: not a readable image (its {kind} header is cut short or "
                                            f"damaged); the file may be truncated or damaged, give a JPEG, PNG, "
                                            f"TIFF, BMP or DICOM file")


@pytest.mark.parametrize("deflate", [False, True])
def test_a_16_bit_grey_tiff_whose_zero_is_white_is_read_as_its_picture_not_its_negative(deflate: bool) -> None:
    """Pillow reads a 16-bit grey TIFF of PhotometricInterpretation 0 (white is zero, as some CR exports write) as
    stored, where it turns an 8-bit one: the film was read, scored and measured as its negative. It reads as the same
    data of black is zero turned over, and an 8-bit film saved so (v * 257) exactly as its 8-bit picture, by the
    decoder and by the guard's `eight_bit_film` alike."""
    from pneumoscan.data.decode import eight_bit_film

    twelve = _TWELVE[..., None]
    white_zero = read_film(tiff16(twelve, deflate=deflate, photometric=0))
    black_zero = read_film(tiff16(twelve, deflate=deflate, photometric=1))
    assert white_zero.deep and np.abs(white_zero.gray.astype(int) + black_zero.gray - 255).max() <= 1
    eight = np.arange(12 * 16, dtype=np.uint8).reshape(12, 16)
    data = tiff16(eight[..., None].astype(np.uint16) * 257, deflate=deflate, photometric=0)
    film = read_film(data)
    assert not film.deep and np.array_equal(film.gray, 255 - eight)
    assert np.array_equal(eight_bit_film(data), 255 - eight)


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize(("dtype", "sample_format"), [(np.int16, 2), (np.int32, 2), (np.float32, 3)])
def test_a_compressed_tiff_of_signed_or_float_grey_reads_as_its_uncompressed_copy(order: str, dtype: type,
                                                                                   sample_format: int) -> None:
    """Pillow has libtiff's samples, given in the machine's byte order, unpacked in the file's own but for unsigned
    16-bit ones: a big-endian deflate TIFF of signed 16- or 32-bit or float grey read each sample's bytes swapped on a
    little-endian machine (12-bit data as noise, scored). It reads as the uncompressed file, by the decoder and (16
    bits) by the guard's `eight_bit_film`."""
    from pneumoscan.data.decode import eight_bit_film

    signed = (_TWELVE.astype(np.int32) - 2000).astype(dtype)[..., None]
    raw = read_film(tiff16(signed, "<", photometric=1, sample_format=sample_format)).gray
    assert np.array_equal(read_film(tiff16(signed, order, deflate=True, photometric=1,
                                           sample_format=sample_format)).gray, raw)
    if dtype != np.int16:
        return
    eight = (np.arange(12 * 16).reshape(12, 16, 1) % 128 * 257).astype(np.int16)  # within int16
    assert np.array_equal(eight_bit_film(tiff16(eight, order, deflate=True, photometric=1, sample_format=2)),
                          eight[..., 0] // 257)


def test_a_big_endian_16_bit_grey_tiff_whose_zero_is_white_is_told_to_be_saved_with_black_as_zero() -> None:
    """Pillow has no mode for a big-endian 16-bit grey TIFF of PhotometricInterpretation 0: it was told 'a TIFF of 1
    sample of 16 bits (PhotometricInterpretation 0), which is not read; save the film as an 8- or 16-bit greyscale
    TIFF or PNG', which it is. Its layout says white is zero, and the TIFF to save is one of black as zero."""
    with pytest.raises(InputError) as exc:
        read_film(tiff16(_TWELVE[..., None], ">", photometric=0), name="film.tif")
    assert check_error(exc, "film.tif") == ("film.tif: a TIFF of 1 sample of 16 bits (PhotometricInterpretation 0, "
                                            "white is zero), which is not read; save the film as an 8- or 16-bit "
                                            "greyscale TIFF of black as zero or PNG")


def test_a_bigtiff_of_samples_pillow_has_no_mode_for_is_named_by_its_layout_not_a_traceback() -> None:
    """The layout of a TIFF Pillow has no mode for was read from an 8-byte header, a classic TIFF's: a BigTIFF's is 16
    bytes, so a BigTIFF of 16-bit RGB + alpha + one more sample went out of read_film as struct.error (audit of a
    folder holding one stopped on a traceback). It is named by its layout as a classic TIFF is. Little-endian only:
    Pillow reads no big-endian BigTIFF (it looks for 43 in the header's third byte): a whole one, of any layout, was
    told its TIFF header is cut short or damaged and the file may be truncated; it is named with the export to make."""
    order = "<"
    data = tiff16(np.stack([_TWELVE] * 5, axis=-1), order, big=True)
    with pytest.raises(InputError) as exc:
        read_grayscale(data, name="film.tif")
    assert check_error(exc, "film.tif") == ("film.tif: a TIFF of 5 samples of 16 bits (PhotometricInterpretation 2), "
                                            "which is not read; save the film as an 8- or 16-bit greyscale TIFF or PNG")
    assert np.array_equal(read_grayscale(tiff16(np.stack([_TWELVE] * 3, axis=-1), order, big=True))[0],
                          read_grayscale(tiff16(np.stack([_TWELVE] * 3, axis=-1), order))[0])
    with pytest.raises(InputError) as exc:
        read_grayscale(tiff16(_TWELVE[..., None], ">", big=True, photometric=1), name="film.tif")
    assert check_error(exc, "film.tif") == ("film.tif: a big-endian BigTIFF, which Pillow does not read; save the film "
                                            "as a TIFF of Intel (little-endian) byte order or as PNG")


@pytest.mark.parametrize("order", ["<", ">"])
def test_a_whole_tiff_of_samples_pillow_has_no_mode_for_is_named_by_its_layout_not_called_damaged(order: str) -> None:
    """A valid TIFF of a sample layout Pillow has no mode for (16-bit RGB + alpha + one more sample, signed 16-bit
    RGB; a 16-bit grey + alpha film alike) was told its TIFF header is cut short or damaged and the file may be
    truncated: the user was sent to copy a whole file again. Its layout is named with the export to make; a TIFF cut
    in its header is still called cut short."""
    data = tiff16(np.stack([_TWELVE] * 5, axis=-1), order)
    with pytest.raises(InputError) as exc:
        read_grayscale(data, name="film.tif")
    assert check_error(exc, "film.tif") == ("film.tif: a TIFF of 5 samples of 16 bits (PhotometricInterpretation 2), "
                                            "which is not read; save the film as an 8- or 16-bit greyscale TIFF or PNG")
    with pytest.raises(InputError) as exc:
        read_grayscale(tiff16(np.stack([_TWELVE] * 3, axis=-1), order, sample_format=2), name="film.tif")
    assert "a TIFF of 3 signed samples of 16 bits" in check_error(exc, "film.tif")
    with pytest.raises(InputError) as exc:
        read_grayscale(data[:30], name="film.tif")
    assert "its TIFF header is cut short or damaged" in check_error(exc, "film.tif")


@pytest.mark.parametrize("marker, precision, kind", [(0xC3, 8, "lossless JPEG"), (0xC0, 12, "12-bit JPEG"),
                                                     (0xC1, 12, "12-bit JPEG"), (0xF7, 8, "JPEG-LS")])
def test_a_jpeg_pillow_cannot_decode_is_named_not_called_damaged(marker: int, precision: int, kind: str) -> None:
    """A lossless JPEG (SOF3, as some PACS export films) said 'broken data stream ...; the file may be truncated or
    damaged', a 12-bit one 'cannot identify image file', a JPEG-LS one (SOF55) that its JPEG header is cut short or
    damaged: none is damaged, and none said to export the film. Each
    is named as a format not read; a baseline or progressive JPEG still reads."""
    from pneumoscan.data.decode import jpeg_not_read

    for progressive in (False, True):
        data = encode(Image.fromarray(ramp()), "JPEG", progressive=progressive)
        assert jpeg_not_read(data) is None and read_grayscale(data).shape == ramp().shape
    data = bytearray(encode(Image.fromarray(ramp()), "JPEG"))
    at = data.index(b"\xff\xc0")
    data[at + 1], data[at + 4] = marker, precision
    with pytest.raises(InputError) as exc:
        read_grayscale(bytes(data), name="film.jpg")
    assert check_error(exc, "film.jpg") == (f"film.jpg: {kind} images are not supported; export the X-ray as PNG, "
                                            f"JPEG or DICOM")


def test_pillow_s_nameless_warnings_of_broken_exif_or_tiff_tags_are_quiet() -> None:
    """Pillow warned 'Corrupt EXIF data.  Expecting to read 12 bytes but only got 0. ' while reading a JPEG with a
    broken EXIF block (scored as stored) or a TIFF cut in its tags (refused in one line): the CLI printed it as
    'pneumoscan: warning: ...', naming no file. The film's own line says what matters."""
    from pneumoscan.data.decode import quiet_decoder_warnings

    exif = b"Exif\0\0II*\0" + struct.pack("<IH", 8, 3) + struct.pack("<HHII", 0x0112, 3, 1, 6)  # 3 tags, 1 there
    jpeg = encode(Image.fromarray(ramp()), "JPEG", exif=exif)
    tiff = encode(Image.fromarray(ramp()), "TIFF")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_decoder_warnings()
        assert read_grayscale(jpeg).size == ramp().size  # its one orientation tag read
        with pytest.raises(InputError):
            read_grayscale(tiff[:30], name="cut.tif")
    assert not [str(w.message) for w in caught if "PIL" in w.filename], [str(w.message) for w in caught]


def test_small_image_over_max_pixels(tmp_path: Path) -> None:
    path = write(tmp_path / "small.png", encode(Image.fromarray(ramp(h=4, w=4)), "PNG"))
    with pytest.raises(InputError) as exc:
        read_grayscale(path, max_pixels=10)
    assert "too large" in check_error(exc, str(path))
    assert read_grayscale(path, max_pixels=16).shape == (4, 4)


def test_name_is_sanitised_to_one_line() -> None:
    """On one line, and distinct: a newline escaped, not a space that names the file 'evil name.png'."""
    with pytest.raises(InputError) as exc:
        read_grayscale(b"junk", name="evil\nname.png")
    assert str(exc.value).startswith("evil\\nname.png: ")


def test_invalid_arguments_are_programming_errors() -> None:
    with pytest.raises(ValueError):
        read_grayscale(b"x", draft_size=0)
    with pytest.raises(ValueError):
        read_grayscale(b"x", max_pixels=0)
    with pytest.raises(TypeError):
        read_grayscale(123)  # type: ignore[arg-type]


@pytest.mark.parametrize("warning_filter", ["ignore", "error"])
def test_mutated_inputs_only_raise_input_error(warning_filter: str) -> None:
    """Seeded mini-fuzz: truncations and byte flips of valid files never escape as other errors,
    also when library warnings are turned into exceptions."""
    seeds = [
        encode(Image.fromarray(ramp(h=8, w=8)), "PNG"),
        encode(Image.fromarray(ramp(h=8, w=8, hi=4000, dtype=np.uint16)), "TIFF"),
        encode(Image.fromarray(ramp(h=16, w=16)), "JPEG"),
        encode(Image.fromarray(ramp(h=8, w=8)), "BMP"),
        dicom_bytes(make_dicom(ramp(h=8, w=8, hi=4000, dtype=np.uint16), bits_stored=12, center=100, width=50)),
    ]
    rng = random.Random(1234)
    warnings.simplefilter(warning_filter)  # pytest restores the filters after each test
    for _ in range(150):
        data = bytearray(rng.choice(seeds))
        if rng.random() < 0.5:
            data = data[: rng.randrange(len(data))]
        for _ in range(rng.randint(1, 6)):
            if data:
                data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            out = read_grayscale(bytes(data), name="fuzz", max_pixels=1_000_000)
        except InputError as exc:
            assert str(exc).startswith("fuzz: ") and "\n" not in str(exc)
            assert PATIENT not in str(exc)
        else:
            assert out.dtype == np.uint8 and out.ndim == 2


def test_lab_tiff_decodes_to_its_lightness_band() -> None:
    """Regression (found by tests/inference/test_fuzz_loader.py): a valid CIELab TIFF was refused as
    'truncated or damaged' because Pillow cannot convert LAB to L; its L band is the lightness."""
    rgb = np.stack([ramp(h=6, w=9), ramp(h=6, w=9)[::-1], np.full((6, 9), 40, np.uint8)], axis=-1)
    lab = Image.fromarray(rgb).convert("LAB")
    out = read_grayscale(encode(lab, "TIFF"))
    np.testing.assert_array_equal(out, np.asarray(lab)[..., 0])
    gray = read_grayscale(encode(Image.fromarray(ramp(h=6, w=9)).convert("RGB").convert("LAB"), "TIFF"))
    assert np.all(np.diff(gray.astype(int).ravel()) >= 0)  # lightness keeps the order of the gray ramp


@pytest.mark.parametrize(("photometric", "inverted"), [("monochrome2", False), (" MONOCHROME2 ", False),
                                                        ("monochrome1", True), ("YBR_FULL", False)])
def test_dicom_photometric_label_in_another_case_or_inconsistent_with_one_sample_is_read(
        tmp_path: Path, photometric: str, inverted: bool) -> None:
    """Seen from modality exports: the label in lower case, or a colour label on one sample per pixel; both
    were refused as 'truncated or damaged'."""
    a = ramp(lo=20, hi=180)
    ds = make_dicom(a)
    ds.PhotometricInterpretation = photometric
    out = read_grayscale(dcm(tmp_path, ds))
    np.testing.assert_array_equal(out, 255 - a if inverted else a)


def test_an_8_bit_film_saved_as_16_bit_is_read_as_it_was() -> None:
    """A 16-bit copy of an 8-bit film (each value * 257, as Pillow widens it) was stretched over its own range, so
    a film not spanning 0-255 (most do not) got other pixels than its 8-bit file, and another score."""
    a = ramp(lo=20, hi=180)
    wide = a.astype(np.uint16) * 257
    for name, data in {"png": encode(Image.fromarray(wide), "PNG"), "tiff": encode(Image.fromarray(wide), "TIFF"),
                       "dicom": dicom_bytes(make_dicom(wide, bits_stored=16))}.items():
        np.testing.assert_array_equal(read_grayscale(data), a, err_msg=name)
    almost = wide.copy()
    almost[0, 0] += 1  # one value off: 16-bit data after all, stretched as before
    np.testing.assert_array_equal(read_grayscale(encode(Image.fromarray(almost), "PNG")), minmax_u8(almost))


def test_a_png_is_stretched_only_when_its_16_bit_grey_levels_are_read_otherwise_than_stored() -> None:
    """The page hid every 16-bit PNG, by its header alone, for the browser drawing it otherwise than the service read
    it: an 8-bit film saved as 16 bits, read and drawn alike, too. Only a PNG whose 16-bit levels are stretched is."""
    a = ramp(lo=20, hi=180)
    twelve = a.astype(np.uint16) * 16  # a 12-bit film, 320 to 2880 of 65535: near black as stored
    assert stretched(encode(Image.fromarray(twelve), "PNG"))
    assert not stretched(encode(Image.fromarray(a.astype(np.uint16) * 257), "PNG"))  # read as `a`, as drawn
    full = twelve.copy()
    full[0, :2] = (0, 65535)  # spanning 0-65535: stretched onto 0-255 as a browser scales it
    assert not stretched(encode(Image.fromarray(full), "PNG"))
    assert not stretched(encode(Image.fromarray(a), "PNG"))
    assert not stretched(encode(Image.fromarray(twelve), "TIFF"))  # a browser does not show it at all
    assert not stretched(encode(Image.fromarray(np.stack([a] * 3, axis=-1)), "PNG"))


@pytest.mark.parametrize(("widened", "apart"), [
    (lambda v: v * 257 - (v == 255), False),  # 0..65534: stretched onto 0-255, as a browser draws it
    (lambda v: v << 8, False),  # OpenCV's convertTo(..., 256): 0..65280, drawn within a grey level of its read
    (lambda v: (v * 4095 // 255) << 4, False),  # a 12-bit film over its whole range, shifted to 16 bits: 0..65520
    (lambda v: 8000 + (v * 3000 // 255 << 4), True),  # its darkest 8000 read black, drawn grey 31
    (lambda v: v * 16, True),  # a 12-bit film as stored: 0..4080, near black as drawn
])
def test_a_png_is_stretched_only_when_a_browser_draws_it_visibly_otherwise_than_it_is_read(
        widened: Callable[[np.ndarray], np.ndarray], apart: bool) -> None:
    """Any 16-bit PNG not spanning exactly 0..65535 nor v * 257 was `stretched`, so the page hid films a browser draws
    within a grey level of what the service read under a note saying it shows them near black. Stretched now means
    read and drawn differ by more than `SHOWN_APART` grey levels at some pixel (a browser draws about v / 257)."""
    from pneumoscan.data.decode import SHOWN_APART

    v = np.tile(np.arange(256, dtype=np.uint32), (8, 1))  # every 8-bit level, darkest 0 and brightest 255
    data = encode(Image.fromarray(widened(v).astype(np.uint16)), "PNG")
    drawn = np.rint(np.asarray(Image.open(io.BytesIO(data)), dtype=np.float64) / 257)
    assert bool(np.abs(read_grayscale(data) - drawn).max() > SHOWN_APART) is apart  # the rule is what it says
    assert stretched(data) is apart


def _several_channels(grey: np.ndarray, colour_type: int, alpha: np.ndarray | None = None, **options: object) -> bytes:
    """A 16-bit PNG of colour type 2, 4 or 6 (0: grey alone) holding the 16-bit grey levels `grey` in each colour band,
    opaque (or of `alpha`), its rows filtered as encoders do; `options` of `png16` (interlaced, idats)."""
    alpha = np.full_like(grey, 65535) if alpha is None else alpha
    channels = {0: [grey], 2: [grey] * 3, 4: [grey, alpha], 6: [grey] * 3 + [alpha]}
    return png16(np.stack(channels[colour_type], axis=-1), colour_type, filtered=True, **options)


_TWELVE = ramp(lo=300, hi=4000, dtype=np.uint16)


@pytest.mark.parametrize("colour_type", [2, 4, 6])
@pytest.mark.parametrize("levels", [
    _TWELVE,  # a 12-bit film stored low: its high bytes read 1..15, near black
    np.where(np.arange(_TWELVE.size).reshape(_TWELVE.shape) == 0, 65535, _TWELVE),  # with a burned-in white label
    _TWELVE * 8,  # 15-bit data: its high bytes read at half brightness
    _TWELVE + 61440,  # a 12-bit film stored high (v + 0xF000): its high bytes read 240..255, flat
    ramp(lo=0, hi=9000, dtype=np.uint16),  # a very dark genuine 16-bit film: its high bytes read 0..35
    ramp(lo=0, hi=65535, dtype=np.uint16),  # full range: its high bytes read v >> 8, not stretched as a grey PNG is
], ids=["12-bit", "12-bit-labelled", "15-bit", "12-bit-high", "dark-16-bit", "full-16-bit"])
def test_a_16_bit_png_of_several_channels_reads_at_full_depth_as_its_grey_png(colour_type: int,
                                                                             levels: np.ndarray) -> None:
    """Pillow reads a 16-bit colour or grey+alpha PNG by each sample's high byte: a 12-bit film read near black and
    was refused (or, with a white label, 15-bit or stored high, read flat or dark and scored; a dark genuine film was
    refused). Its full samples are read now, so it reads, and is `stretched`, exactly as the same 16-bit grey PNG."""
    grey = read_film(png16(levels, 0))
    film = read_film(_several_channels(levels, colour_type), name="film.png")
    np.testing.assert_array_equal(film.gray, grey.gray)
    assert film.stretched is grey.stretched


@pytest.mark.parametrize("colour_type", [2, 4, 6])
def test_a_16_bit_png_of_several_channels_of_an_8_bit_film_reads_as_its_8_bit_file(colour_type: int) -> None:
    """An 8-bit film saved as 16-bit RGB, grey+alpha or RGBA (each value v * 257, as OpenCV writes a uint16 array)
    reads exactly as its 8-bit file, not stretched."""
    eight = ramp(lo=3, hi=250)
    film = read_film(_several_channels(eight.astype(np.uint16) * 257, colour_type))
    np.testing.assert_array_equal(film.gray, eight)
    assert not film.stretched


def test_a_16_bit_colour_png_reads_its_luminance_at_full_depth() -> None:
    """A colour 16-bit PNG of 12-bit data reads Pillow's "L" weights of its full samples, stretched (its high bytes
    read 0..15)."""
    red, green, blue = (ramp(lo=lo, hi=hi, dtype=np.uint16) for lo, hi in ((0, 4095), (4095, 100), (900, 1000)))
    luma = (red * 19595.0 + green * 38470.0 + blue * 7471.0) / 65536
    film = read_film(png16(np.stack([red, green, blue], axis=-1), 2, filtered=True))
    assert np.abs(film.gray.astype(int) - minmax_u8(luma).astype(int)).max() <= 1
    assert film.stretched


@pytest.mark.parametrize("colour_type", [4, 6])
def test_a_16_bit_png_with_alpha_is_composited_on_black_at_full_depth(colour_type: int) -> None:
    """A 16-bit grey+alpha or colour+alpha PNG of 12-bit data reads its grey level times its alpha, as any film with
    alpha, at full depth: its right half, transparent, reads black."""
    alpha = np.full_like(_TWELVE, 65535)
    alpha[:, 12:] = 0
    film = read_film(_several_channels(_TWELVE, colour_type, alpha))
    np.testing.assert_array_equal(film.gray, minmax_u8(np.where(alpha > 0, _TWELVE, 0)))


def test_a_16_bit_colour_png_s_transparent_colour_reads_black_at_full_depth() -> None:
    """The pixels of a 16-bit colour PNG of 12-bit data whose colour its `tRNS` chunk makes transparent read black,
    as a transparent pixel of any film, and the others as its grey PNG's (it was refused)."""
    import struct
    import zlib

    key = int(_TWELVE[5, 5])
    data = png16(np.stack([_TWELVE] * 3, axis=-1), 2)
    body = struct.pack(">HHH", key, key, key)
    trns = struct.pack(">I", len(body)) + b"tRNS" + body + struct.pack(">I", zlib.crc32(b"tRNS" + body))
    film = read_film(data[:33] + trns + data[33:])  # after the signature (8 bytes) and IHDR (25)
    np.testing.assert_array_equal(film.gray, minmax_u8(np.where(_TWELVE == key, 0, _TWELVE)))


def test_a_16_bit_grey_png_s_transparent_level_reads_black_as_an_8_bit_grey_png_s() -> None:
    """The tRNS grey level of a 16-bit grey PNG was ignored (its pixels read at their value) where an 8-bit grey
    PNG's and a 16-bit colour PNG's read black: an 8-bit film saved as v * 257 with its key saved so reads as its
    8-bit file, and 12-bit data with its key blacked before it is stretched, as its colour twin reads."""
    eight = ramp(lo=3, hi=250).astype(np.uint8)
    key8 = int(eight[5, 5])
    as8 = read_film(encode(Image.fromarray(eight), "PNG", transparency=key8))
    as16 = read_film(encode(Image.fromarray(eight.astype(np.uint16) * 257), "PNG", transparency=key8 * 257))
    np.testing.assert_array_equal(as8.gray, np.where(eight == key8, 0, eight))
    np.testing.assert_array_equal(as16.gray, as8.gray)
    assert not as16.deep and not as16.stretched
    key = int(_TWELVE[5, 5])
    grey = read_film(encode(Image.fromarray(_TWELVE), "PNG", transparency=key))
    colour = read_film(png16(np.stack([_TWELVE] * 3, axis=-1), 2,
                             chunks=((b"tRNS", struct.pack(">HHH", key, key, key)),)))
    np.testing.assert_array_equal(grey.gray, minmax_u8(np.where(_TWELVE == key, 0, _TWELVE)))
    np.testing.assert_array_equal(grey.gray, colour.gray)
    assert grey.shown == colour.shown


@pytest.mark.parametrize("order, deflate", [("<", False), (">", False), ("<", True), (">", True)])
def test_a_16_bit_colour_tiff_reads_at_full_depth_as_its_grey_tiff(order: str, deflate: bool) -> None:
    """A 16-bit RGB TIFF was read by each sample's high byte alone (12-bit data as 0..15, a near-black film, scored)
    where a 16-bit RGB PNG is read at full depth: it reads as its 16-bit grey TIFF, in either byte order, raw or
    compressed (libtiff's decoder), its alpha composited on black, and an 8-bit film saved as v * 257 as its 8-bit
    file."""
    grey = read_film(encode(Image.fromarray(_TWELVE), "TIFF"))
    film = read_film(tiff16(np.stack([_TWELVE] * 3, axis=-1), order, deflate=deflate, rows_per_strip=5))
    np.testing.assert_array_equal(film.gray, grey.gray)
    assert film.deep and film.rgb is not None and film.rgb.shape == (*_TWELVE.shape, 3)
    alpha = np.full_like(_TWELVE, 65535)
    alpha[:, 12:] = 0
    film = read_film(tiff16(np.stack([_TWELVE] * 3 + [alpha], axis=-1), order, deflate=deflate))
    np.testing.assert_array_equal(film.gray, minmax_u8(np.where(alpha > 0, _TWELVE, 0)))
    eight = ramp(lo=3, hi=250).astype(np.uint16)
    film = read_film(tiff16(np.stack([eight * 257] * 3, axis=-1), order, deflate=deflate))
    np.testing.assert_array_equal(film.gray, eight)
    assert not film.deep


def test_a_pillow_that_cannot_read_a_16_bit_colour_tiff_at_full_depth_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Pillow whose TIFF decoders do not give the low bytes is named with the update to make, for a TIFF as for a
    PNG, not the file called damaged."""
    from pneumoscan.data import deep_tiff

    monkeypatch.setattr(deep_tiff, "pillow_reads_deep_tiff", lambda: False)
    with pytest.raises(InputError) as exc:
        read_film(tiff16(np.stack([_TWELVE] * 3, axis=-1)), name="film.tif")
    msg = check_error(exc, "film.tif")
    assert "a 16-bit colour TIFF, which this Pillow" in msg and "upgrade Pillow" in msg, msg
    assert "16-bit greyscale TIFF" in msg and "damaged" not in msg, msg


def test_a_pillow_whose_libtiff_decoder_lacks_the_other_byte_order_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check of Pillow reads an uncompressed TIFF: a compressed one goes through libtiff, whose raw mode of the
    other byte order a Pillow may lack. The film decodes in its own order, so Pillow is named, not the file called
    damaged."""
    real = Image._getdecoder

    def one_order(mode: str, name: str, args: object, extra: tuple = ()) -> object:
        if name == "libtiff" and isinstance(args, tuple) and not str(args[0]).endswith("N"):
            raise ValueError("unknown raw mode for given image mode")
        return real(mode, name, args, extra)

    data = tiff16(np.stack([_TWELVE] * 3, axis=-1), deflate=True)
    expected = read_film(data).gray
    monkeypatch.setattr(Image, "_getdecoder", one_order)
    with pytest.raises(InputError) as exc:
        read_film(data, name="film.tif")
    msg = check_error(exc, "film.tif")
    assert "a 16-bit colour TIFF, which this Pillow" in msg and "upgrade Pillow" in msg and "damaged" not in msg, msg
    monkeypatch.setattr(Image, "_getdecoder", real)
    np.testing.assert_array_equal(read_film(data).gray, expected)


def test_an_8_bit_film_saved_as_16_bit_grey_alpha_keeps_its_levels_whatever_its_alpha() -> None:
    """An 8-bit film (v * 257) in a 16-bit grey+alpha PNG whose alpha is not a multiple of 257 (one pixel at 30000)
    was stretched from its darkest to its brightest level (20..200 read as 0..255, 55 levels off): its grey samples
    alone decide that it is 8-bit, and its alpha is composited at 16 bits."""
    eight = ramp(lo=20, hi=200).astype(np.uint16)
    alpha = np.full_like(eight, 65535)
    alpha[0, 0] = 30000
    film = read_film(png16(np.stack([eight * 257, alpha], axis=-1), 4))
    expected = eight.copy()
    expected[0, 0] = round(20 * 30000 / 65535)
    np.testing.assert_array_equal(film.gray, expected)
    assert not film.stretched


def test_an_8_bit_film_saved_as_16_bit_colour_matches_its_transparent_colour_on_all_16_bits() -> None:
    """The tRNS colour of an 8-bit film saved as 16-bit RGB (v * 257) is matched on the whole 16-bit samples, as PNG
    says: a key one above a pixel's value (v * 257 + 1) made that pixel black, as its high bytes matched."""
    import struct

    eight = ramp(lo=3, hi=250).astype(np.uint16)
    colour = np.stack([eight * 257] * 3, axis=-1)
    for key, black in ((int(colour[5, 5, 0]) + 1, 0), (int(colour[5, 5, 0]), 1)):
        film = read_film(png16(colour, 2, chunks=((b"tRNS", struct.pack(">HHH", key, key, key)),)))
        np.testing.assert_array_equal(film.gray, np.where(eight == eight[5, 5], 0, eight) if black else eight)


@pytest.mark.parametrize("colour_type", [0, 2, 4, 6])
def test_a_16_bit_png_without_pixel_data_says_it_cannot_be_loaded(colour_type: int) -> None:
    """A 16-bit colour PNG with no IDAT chunk said 'not a readable image (list index out of range)'; it says what its
    grey twin says."""
    data = _several_channels(_TWELVE, colour_type, idats=0)
    with pytest.raises(InputError) as exc:
        read_film(data, name="film.png")
    assert "not a readable image (cannot load this image)" in check_error(exc, "film.png")


@pytest.mark.parametrize("colour_type", [2, 4, 6])
@pytest.mark.parametrize("interlaced, idats", [(True, 1), (False, 3), (True, 4)], ids=["adam7", "3-idats",
                                                                                     "adam7-4-idats"])
def test_a_16_bit_png_of_several_channels_interlaced_or_in_several_idats_reads_as_its_grey_png(
        colour_type: int, interlaced: bool, idats: int) -> None:
    """The second decode of each sample's low byte follows Pillow's own through Adam7's passes and across IDAT
    chunks: such a 12-bit film reads as the same 16-bit grey PNG stored plainly."""
    grey = read_film(png16(_TWELVE, 0))
    film = read_film(_several_channels(_TWELVE, colour_type, interlaced=interlaced, idats=idats))
    np.testing.assert_array_equal(film.gray, grey.gray)


def test_a_pillow_that_cannot_read_16_bit_colour_samples_is_named_not_the_file(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A Pillow whose PNG decoder lacks the little-endian raw mode the low bytes are read with said the file was
    'truncated or damaged'; it names Pillow and how to update it. One whose tiles are plain tuples (older Pillow)
    reads the film."""
    from PIL import PngImagePlugin

    from pneumoscan.data import deep_png

    data = _several_channels(_TWELVE, 2)
    expected = read_film(data).gray
    real = Image._getdecoder

    def no_little_endian(mode: str, name: str, args: object, extra: tuple = ()) -> object:
        if isinstance(args, str) and args.endswith(";16L"):
            raise ValueError("unknown raw mode for given image mode")
        return real(mode, name, args, extra)

    monkeypatch.setattr(Image, "_getdecoder", no_little_endian)
    deep_png.pillow_reads_deep_png.cache_clear()
    try:
        with pytest.raises(InputError) as exc:
            read_film(data, name="film.png")
        msg = check_error(exc, "film.png")
        assert "cannot read at full depth; upgrade Pillow" in msg and "damaged" not in msg
        monkeypatch.setattr(Image, "_getdecoder", real)
        opened = PngImagePlugin.PngImageFile._open

        def plain_tiles(self: PngImagePlugin.PngImageFile) -> None:
            opened(self)
            self.tile = [tuple(tile) for tile in self.tile]

        monkeypatch.setattr(PngImagePlugin.PngImageFile, "_open", plain_tiles)
        deep_png.pillow_reads_deep_png.cache_clear()
        np.testing.assert_array_equal(read_film(data).gray, expected)
    finally:
        deep_png.pillow_reads_deep_png.cache_clear()


@pytest.mark.parametrize("kind", ["png", "dicom"])
def test_a_decode_that_runs_out_of_memory_blames_the_machine_not_the_file(kind: str,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A large film decoded while the machine is short of memory said 'not a readable image (MemoryError); the file
    may be truncated or damaged': the user was told to replace a good file. The MemoryError stays the cause, which the
    service reads to answer 503, to retry."""
    import pydicom.dataset

    import pneumoscan.data.decode as decode

    def short(*_: object) -> None:
        raise MemoryError()

    if kind == "png":
        data = encode(Image.fromarray(minmax_u8(np.arange(64, dtype=np.float64).reshape(8, 8))), "PNG")
        monkeypatch.setattr(decode, "_pil_to_gray", short)  # as numpy's allocation for the decoded pixels fails
    else:
        data = dicom_bytes(make_dicom(np.arange(64, dtype=np.uint16).reshape(8, 8) * 50, bits_stored=12))
        monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(short))
    with pytest.raises(InputError) as exc:
        read_grayscale(data, name="big.film")
    msg = check_error(exc, "big.film")
    assert "ran out of memory" in msg and "may be fine" in msg, msg
    assert "damaged" not in msg, msg
    assert isinstance(exc.value, DecodeOutOfMemory) and "(8 x 8 px; " in msg, msg  # the service's 413 gives the size
    assert (exc.value.label, exc.value.width, exc.value.height) == ("big.film", 8, 8)


@pytest.mark.parametrize("step", ["header", "mapping", "window", "voi lut"])
def test_a_dicom_whose_reading_or_grey_mapping_runs_out_of_memory_blames_the_machine_not_the_file(
        step: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory running short as pydicom read the file said 'damaged DICOM header ... give a complete, valid DICOM
    file'; after it had decoded the pixels, as the film was mapped to grey levels, 'DICOM pixel data has an
    unsupported layout ... give a single-frame grayscale or RGB DICOM image' (a 422 for a good film, which evaluate
    skipped as unreadable); in its window or VOI LUT, the film was decoded without them, min-max stretched, and no
    one was told. Each is the machine's shortage, named as the decoder's own is (with the film's size once read)."""
    import pydicom
    import pydicom.pixels
    from pydicom.dataset import Dataset

    import pneumoscan.data.dicom as dicom

    def short(*_: object, **__: object) -> None:
        raise MemoryError("Unable to allocate 1.07 GiB for an array")

    a = np.arange(64, dtype=np.uint16).reshape(8, 8) * 50
    ds = make_dicom(a, bits_stored=12, **({"center": 1600, "width": 1000} if step == "window" else {}))
    if step == "voi lut":
        item = Dataset()
        item.LUTDescriptor, item.LUTData = [4096, 0, 16], list(range(4096))
        item["LUTDescriptor"].VR = item["LUTData"].VR = "US"
        ds.VOILUTSequence = [item]
    read_grayscale(dicom_bytes(ds))  # decodes with memory to spare
    monkeypatch.setattr(*{"header": (pydicom, "dcmread"), "mapping": (dicom, "to_uint8"),
                          "window": (pydicom.pixels, "apply_windowing"), "voi lut": (dicom, "_look_up")}[step], short)
    with pytest.raises(DecodeOutOfMemory) as exc:
        read_grayscale(dicom_bytes(ds), name="big.film")
    msg = check_error(exc, "big.film")
    assert "ran out of memory" in msg and "may be fine" in msg and ("(8 x 8 px; " in msg) == (step != "header"), msg
    assert "layout" not in msg and "damaged" not in msg, msg
    assert isinstance(exc.value.__cause__, MemoryError)


def test_a_memory_shortage_in_pillow_s_self_check_names_the_film_and_is_not_remembered_as_an_old_pillow(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The check of Pillow's 16-bit colour read turned a MemoryError into a cached False: after one shortage every
    16-bit colour PNG said 'upgrade Pillow' until the process restarted. The shortage is the film's; once memory is
    back the film reads."""
    from pneumoscan.data import deep_png

    data = _several_channels(_TWELVE, 2)
    expected = read_film(data).gray
    real = deep_png._samples
    monkeypatch.setattr(deep_png, "_samples", lambda _: (_ for _ in ()).throw(MemoryError()))
    deep_png.pillow_reads_deep_png.cache_clear()
    try:
        with pytest.raises(DecodeOutOfMemory) as exc:
            read_film(data, name="film.png")
        assert check_error(exc, "film.png").startswith("film.png: the machine ran out of memory")
        monkeypatch.setattr(deep_png, "_samples", real)
        np.testing.assert_array_equal(read_film(data, name="film.png").gray, expected)
    finally:
        deep_png.pillow_reads_deep_png.cache_clear()


def test_a_memory_shortage_while_turning_a_film_upright_names_the_film_not_reads_it_sideways(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A MemoryError in applying the EXIF orientation was taken for broken EXIF: the film was read as stored
    (sideways) and scored."""
    from PIL import ImageOps

    im = Image.fromarray(minmax_u8(np.arange(12 * 20, dtype=np.float64).reshape(12, 20)))
    exif = im.getexif()
    exif[0x0112] = 6
    data = encode(im, "JPEG", exif=exif.tobytes())
    assert read_film(data).gray.shape == (20, 12)

    def short(*_: object, **__: object) -> None:
        raise MemoryError()

    monkeypatch.setattr(ImageOps, "exif_transpose", short)
    with pytest.raises(DecodeOutOfMemory) as exc:
        read_film(data, name="turned.jpeg")
    assert check_error(exc, "turned.jpeg").startswith("turned.jpeg: the machine ran out of memory")


@pytest.mark.parametrize("deflate", [False, True])
def test_a_16_bit_colour_tiff_of_separate_planes_is_refused_naming_its_layout(deflate: bool) -> None:
    """Pillow's libtiff decoder unpacks each plane of a PlanarConfiguration 2 TIFF in its own byte order whatever the
    raw mode, so the second decode gave the high bytes again: a 12-bit film read 0..15 (near-black), taken for an 8-bit
    film saved as v * 257; uncompressed, Pillow read each 16-bit plane as 8-bit samples. Such a film is refused naming
    its layout and the export to make, not scored; its interleaved twin still reads at full depth."""
    colour = np.stack([_TWELVE] * 3, axis=-1)
    with pytest.raises(InputError) as exc:
        read_film(tiff16(colour, deflate=deflate, rows_per_strip=5, planar=True), name="film.tif")
    msg = check_error(exc, "film.tif")
    assert "separate colour planes" in msg and "16-bit greyscale TIFF" in msg and "damaged" not in msg, msg
    assert read_film(tiff16(colour, deflate=deflate, rows_per_strip=5)).deep


@pytest.mark.parametrize("order, deflate", [("<", False), (">", True)])
def test_a_16_bit_colour_tiff_of_premultiplied_alpha_reads_its_colour_at_full_depth(order: str, deflate: bool) -> None:
    """A 16-bit RGB TIFF of premultiplied alpha (ExtraSamples 1) was left to Pillow, which reads each sample's high
    byte: a 12-bit film read 0..15, near-black, and was scored. Its colour samples are already composited on black,
    so it reads as they do in a TIFF without alpha."""
    alpha = np.full_like(_TWELVE, 65535)
    alpha[:, 12:] = 20000
    colour = (_TWELVE.astype(np.uint32) * alpha // 65535).astype(np.uint16)
    film = read_film(tiff16(np.stack([colour] * 3 + [alpha], axis=-1), order, deflate=deflate, premultiplied=True))
    np.testing.assert_array_equal(film.gray, read_film(tiff16(np.stack([colour] * 3, axis=-1), order)).gray)
    np.testing.assert_array_equal(film.gray, minmax_u8(colour))
    assert film.deep
