"""CLI hook: `pneumoscan audit` counts a dataset's images, patients and problems."""
from __future__ import annotations

import argparse
import sys

from pneumoscan.command_outputs import check_outputs, report_stream, write_json
from pneumoscan.data.view_wording import OTHER_VIEW

EXIT_AUDIT_PROBLEMS = 3  # `audit --strict` found a problem; 1 and 2 are taken (some inputs failed; a user mistake)


def cmd_audit(args: argparse.Namespace) -> int:
    from pneumoscan.data.audit import audit, audit_problems, format_audit

    check_outputs(args.json)
    report = audit(args.data, patient_key=args.patient_key or "auto")
    with report_stream(args.json):
        print(format_audit(report))
    if args.json:
        write_json(args.json, report)
    problems = audit_problems(report)
    if args.strict and problems:
        print(f"pneumoscan: audit --strict: {args.data}: {', '.join(problems)} (exit code {EXIT_AUDIT_PROBLEMS})",
              file=sys.stderr)
        return EXIT_AUDIT_PROBLEMS
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """`audit`."""
    from pneumoscan.training.commands import add_patient_key_arg
    p = sub.add_parser("audit", help="count images, patients, sizes, unreadable, colour and non-frontal DICOM files and duplicates in a dataset")
    p.add_argument("data", help="data folder (train/ val/ test/ with NORMAL/ PNEUMONIA/) or CSV manifest")
    p.add_argument("--json", help="also write the audit as JSON to this file ('-': stdout, and the text report goes to stderr)")
    add_patient_key_arg(p, "default auto, as in `train`")
    p.add_argument("--strict", action="store_true",
                   help=f"exit with code {EXIT_AUDIT_PROBLEMS} (after the report) when the audit finds a problem: "
                        "unreadable files, byte-identical files in two splits, with both labels or under two patient "
                        "IDs, images under 32 px, colour images, DICOM films "
                        f"{OTHER_VIEW} (by their header), (with --patient-key folder) images with no patient "
                        "folder, or a patient in two splits by DICOM PatientID, manifest patient column or folder (IDs "
                        "from file names in two splits are only reported: Kermany's restart in each split); for a CI "
                        "gate (default: exit 0)")
    p.set_defaults(func=cmd_audit)
