"""``detector mpta validate FILE`` and ``detector mpta pack DIR -o FILE``."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from camera_pod.commands.tree import render_tree
from camera_pod.inference import selection
from camera_pod.mpta.errors import MptaError
from camera_pod.mpta.fetching import DownloadLimits
from camera_pod.mpta.loading import ArchiveStore
from camera_pod.mpta.packing import pack
from camera_pod.settings import PodSettings
from detector.kit.errors import DetectorError
from detector.kit.redaction import redact_url


def store_from_settings(settings: PodSettings, cache_dir: Path | None = None) -> ArchiveStore:
    limits = DownloadLimits.from_settings(settings)
    cache_dir = cache_dir or settings.cache_dir
    load_model = selection.model_loader(cache_dir, selection.options_from_settings(settings))
    return ArchiveStore(cache_dir, download_limits=limits, load_model=load_model)


def validate_command(args: argparse.Namespace) -> int:
    settings = PodSettings()
    with tempfile.TemporaryDirectory(prefix="mpta-validate-") as scratch:
        # A throwaway cache: validating must not leave a possibly-hostile archive in the real one.
        store = store_from_settings(settings, Path(scratch))
        shown = redact_url(args.file)
        try:
            archive = store.load_blocking(args.file)
        except MptaError as exc:
            print(f"INVALID {shown}", file=sys.stderr)
            for issue in exc.issues:
                print(f"  {issue}", file=sys.stderr)
            return 2
        except DetectorError as exc:
            print(f"ERROR {shown}: {exc}", file=sys.stderr)
            return 1
    print(f"OK {shown} (sha256 {archive.sha256[:12]})")
    print(render_tree(archive))
    return 0


def pack_command(args: argparse.Namespace) -> int:
    try:
        members = pack(Path(args.folder), Path(args.output))
    except MptaError as exc:
        print(f"cannot pack {args.folder}:", file=sys.stderr)
        for issue in exc.issues:
            print(f"  {issue}", file=sys.stderr)
        return 2
    print(f"wrote {args.output}: {', '.join(members)}")
    print(f"check it with: detector mpta validate {args.output}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    mpta = subparsers.add_parser("mpta", help=".mpta pipeline archives")
    commands = mpta.add_subparsers(dest="mpta_command", required=True)
    validate = commands.add_parser("validate", help="load an archive (path or URL), check it, print its node tree")
    validate.add_argument("file", help="path or http(s) URL of the .mpta")
    validate.set_defaults(handler=validate_command)
    packer = commands.add_parser("pack", help="zip a folder with pipeline.json and models into an .mpta")
    packer.add_argument("folder")
    packer.add_argument("-o", "--output", required=True)
    packer.set_defaults(handler=pack_command)
