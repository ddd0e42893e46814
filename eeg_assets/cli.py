"""The command line, ``python -m eeg_assets <command>``: thin wrappers over the pure library.

The help text the parser prints is :data:`DESCRIPTION` and :data:`EPILOG` (plain text). The files
the commands write are specified in docs/cache-format.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from eeg_assets.lib.config import CACHE_LAYOUTS, CacheConfig


#: What ``python -m eeg_assets --help`` says above the commands (plain text: argparse prints it).
DESCRIPTION = """\
The eeg_assets command line: build, check and score the TUSZ window cache without Dagster.
The Dagster assets call the same functions and write identical files."""

#: What ``--help`` says below the commands.
EPILOG = """\
exit codes: 0 success; 1 the data says no (nothing to build, no seizure windows, a damaged
ledger, ...), with one line saying why; 2 a usage error.

The files, the environment flags and the log lines are specified in docs/cache-format.md.
BGB_SMOKE_TEST=1, BGB_LIMIT_FILES=N and BGB_FORCE_MANIFEST_REBUILD=1 are the environment flags
of the upstream training scripts whose cache format this project keeps, read under the same
names so that the same commands work (build-cache and balanced-info: see their --help; a
training run reads all three)."""

#: The ``BGB_*`` flags each command reads, shown below its options.
_BUILD_FLAGS = ("environment: BGB_LIMIT_FILES=N builds at most N recordings, BGB_SMOKE_TEST=1 at "
                "most 3 (--limit-files wins over both); docs/cache-format.md, \"Environment "
                "flags\".")
_BALANCE_FLAGS = ("environment: BGB_LIMIT_FILES=N and BGB_SMOKE_TEST=1 (3 files) use only the "
                  "first files by name; BGB_FORCE_MANIFEST_REBUILD=1 rebuilds manifest.json by "
                  "reading every NPZ's labels; docs/cache-format.md, \"Environment flags\".")


class CommandError(Exception):
    """A failure to report as one clear line and exit code 1."""


def _default_layout() -> str:
    return os.environ.get("EEG_ASSETS_CACHE_LAYOUT") or "windows"


def _cmd_make_sample_corpus(args: argparse.Namespace) -> int:
    from eeg_assets.synthetic.sample_corpus import write_sample_corpus

    summary = write_sample_corpus(Path(args.out))
    print(summary)
    return 0


def _cmd_build_cache(args: argparse.Namespace) -> int:
    from eeg_assets.lib.cache.build import (
        BuildError,
        build_split,
        format_report,
        write_failure_message,
    )
    from eeg_assets.lib.flags import EnvFlags

    try:
        limit = EnvFlags.from_env().file_limit(args.limit_files)
    except ValueError as exc:  # e.g. BGB_LIMIT_FILES=abc: one clear line, not a traceback
        raise CommandError(str(exc)) from exc
    if args.layout not in CACHE_LAYOUTS:
        raise CommandError(f"EEG_ASSETS_CACHE_LAYOUT={args.layout!r}: use one of "
                           f"{', '.join(CACHE_LAYOUTS)}")
    config = CacheConfig(layout=args.layout)
    try:
        report = build_split(
            Path(args.data_dir), Path(args.cache_dir), split=args.split, config=config,
            workers=args.workers, limit_files=limit, progress=None if args.no_progress else "auto",
        )
    except BuildError as exc:
        raise CommandError(str(exc)) from exc
    print(format_report(report))
    if report.all_failed:
        raise CommandError(f"every recording under {args.data_dir} failed; nothing was built")
    _refresh_index_and_manifest(Path(args.cache_dir), config)
    if report.write_failures:
        raise CommandError(write_failure_message(report))
    return 0


def _cmd_adopt_cache(args: argparse.Namespace) -> int:
    from eeg_assets.lib.cache.adopt import adopt_split

    report = adopt_split(Path(args.data_dir), Path(args.cache_dir), _config_of(args.cache_dir))
    print(report.summary(Path(args.cache_dir)))
    return 0


def _cmd_convert_cache(args: argparse.Namespace) -> int:
    from eeg_assets.lib.cache.convert import ConvertError, convert_split
    from eeg_assets.lib.cache.ledger import LedgerError

    try:
        report = convert_split(Path(args.source), Path(args.target), args.layout)
    except (ConvertError, LedgerError) as exc:
        raise CommandError(str(exc)) from exc
    print(report.summary())
    _refresh_index_and_manifest(Path(args.target), CacheConfig(layout=args.layout),
                                "convert-cache")
    if report.refused:
        raise CommandError(f"{len(report.refused)} file(s) of {args.source} failed verification "
                           "and were not converted (listed above)")
    return 0


def _config_of(cache_dir) -> CacheConfig:
    """The configuration of an existing cache split: the default one in the layout its files
    are in."""
    from eeg_assets.lib.cache.layout import detect_layout

    return CacheConfig(layout=detect_layout(Path(cache_dir)))


def _refresh_index_and_manifest(cache_dir: Path, config: CacheConfig,
                                command: str = "build-cache") -> None:
    """Bring _dataset_index.json and manifest.json up to date from the recorded facts (cheap)."""
    from eeg_assets.lib.dataset.index import DatasetError, collect_facts, update_index
    from eeg_assets.lib.dataset.manifest import category_counts, update_manifest

    facts = collect_facts(cache_dir, config)
    index = update_index(cache_dir, config, facts=facts)
    print(f"[{command}] {cache_dir / '_dataset_index.json'}: {len(index.files)} files, "
          f"{index.total_windows} windows")
    try:
        counts = category_counts(update_manifest(cache_dir, config, facts=facts))
    except DatasetError as exc:
        print(f"[{command}] warning: no manifest.json: {exc}")
        return
    print(f"[{command}] {cache_dir / 'manifest.json'}: "
          + ", ".join(f"{n} {category}" for category, n in counts.items()))


def _cmd_scan_cache(args: argparse.Namespace) -> int:
    from eeg_assets.lib.cache.layout import file_kind
    from eeg_assets.lib.cache.npzio import NpzFormatError
    from eeg_assets.lib.dataset.index import INDEX_NAME, DatasetError
    from eeg_assets.lib.dataset.manifest import (
        FULL, MANIFEST_NAME, NO_SEIZURE, PARTIAL, category_counts, describe_counts,
        manifest_warnings, scan_manifest,
    )

    cache_dir = Path(args.cache_dir)
    try:
        result = scan_manifest(cache_dir, _config_of(cache_dir))
    except (DatasetError, NpzFormatError, OSError) as exc:
        raise CommandError(str(exc)) from exc
    for warning in manifest_warnings(result.facts):
        print(f"warning: {warning}", file=sys.stderr)
    counts = category_counts(result.manifest)
    kind = file_kind(f.npz_name for f in result.facts.files)
    print(f"[scan-cache] {cache_dir}: read the labels of {len(result.facts.files)} {kind} file(s)")
    print(f"[scan-cache] wrote {MANIFEST_NAME}: {describe_counts(counts)}")
    print(f"[scan-cache] wrote {INDEX_NAME}: {len(result.facts.files)} files, "
          f"{sum(f.n_windows for f in result.facts.files)} windows")
    if counts[PARTIAL] + counts[FULL] == 0:
        raise CommandError(
            f"no seizure windows in {cache_dir}: all {counts[NO_SEIZURE]} labelled windows are "
            "no_seizure, so no balanced training set can be built (check the annotation files "
            "and the seizure label set)")
    return 0


def _cmd_verify_cache(args: argparse.Namespace) -> int:
    from eeg_assets.lib.cache.verify import verify_cache_command

    return verify_cache_command(Path(args.cache_dir), verify_all=args.all,
                                config=_config_of(args.cache_dir))


def _cmd_balanced_info(args: argparse.Namespace) -> int:
    from eeg_assets.lib.cache.npzio import NpzFormatError
    from eeg_assets.lib.config import BalanceConfig
    from eeg_assets.lib.dataset.balanced import (
        balanced_composition, composition_table, dataset_log_lines, prepare_split,
    )
    from eeg_assets.lib.dataset.index import DatasetError
    from eeg_assets.lib.flags import EnvFlags

    balance = BalanceConfig(seed=args.seed)
    try:
        flags = EnvFlags.from_env()
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    try:
        config = _config_of(args.cache_dir)
        split = prepare_split(Path(args.cache_dir), flags, config)
        composition = balanced_composition(split, balance, config)
    except (DatasetError, NpzFormatError, OSError) as exc:
        raise CommandError(f"no balanced training set for {args.cache_dir}: {exc}") from exc
    print(f"[balanced-info] {args.cache_dir}: seed {balance.seed}, full {balance.full_ratio} x "
          f"partial, background {balance.background_ratio} x partial")
    for line in composition_table(composition) + dataset_log_lines(composition):
        print(line)
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    """Pooled totals of the three scorers and SzCORE averaged per subject, text or JSON
    (``szcore_per_subject``); either annotation format (lib.scoring.read_events)."""
    import json

    from eeg_assets.lib.scoring import ScoringError, format_report, score_paths

    try:
        report = score_paths(args.ref, args.hyp)
    except ScoringError as exc:
        raise CommandError(str(exc)) from exc
    if args.json:
        print(json.dumps(report.to_json(per_file=args.per_file), indent=2, allow_nan=False))
    else:
        print(format_report(report, per_file=args.per_file))
    return 0


def _settings_and_client():
    from eeg_assets.remote.modal_client import ModalUnavailable, load_client
    from eeg_assets.settings import Settings, SettingsError

    try:
        settings = Settings.from_env()
        return settings, load_client(settings.modal_client, settings.modal)
    except (SettingsError, ModalUnavailable) as exc:
        raise CommandError(str(exc)) from exc


def _cmd_upload_raw(args: argparse.Namespace) -> int:
    from eeg_assets.lib.cache.raw_upload import sync_raw
    from eeg_assets.remote.modal_client import ModalUnavailable

    settings, client = _settings_and_client()
    raw_root = Path(args.raw_root) if args.raw_root else Path(settings.raw_root)
    folders = args.folder or sorted(set(settings.split_folders.values()))
    try:
        print(f"[upload-raw] {raw_root} -> volume {settings.modal.raw_volume}")
        report = sync_raw(raw_root, folders, client.raw_volume())
    except (ModalUnavailable, FileNotFoundError) as exc:
        raise CommandError(str(exc)) from exc
    print(report.summary())
    return 0


def _cmd_modal_check(args: argparse.Namespace) -> int:
    from eeg_assets.remote.modal_check import modal_check

    settings, client = _settings_and_client()
    return 1 if modal_check(settings, client) else 0


def _existing_path(text: str) -> Path:
    if not Path(text).exists():
        raise argparse.ArgumentTypeError(f"no such folder or file: {text}")
    return Path(text)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:  # 0 would build nothing, and a negative slice would silently drop files
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _command(sub, name: str, help: str, **kwargs) -> argparse.ArgumentParser:
    """A command whose own --help starts with its one-line summary ``help``, as a sentence."""
    return sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".", **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eeg_assets", description=DESCRIPTION,
                                     epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = _command(sub, "make-sample-corpus",
                 help="write the deterministic TUSZ-format sample corpus")
    p.add_argument("--out", required=True, help="folder to create (gets edf/{train,dev,eval}/...)")
    p.set_defaults(func=_cmd_make_sample_corpus)

    p = _command(sub, "build-cache", help="build the NPZ window cache of one split (incremental)",
                 epilog=_BUILD_FLAGS)
    p.add_argument("--data-dir", required=True, help="TUSZ split folder, searched recursively")
    p.add_argument("--cache-dir", required=True, help="cache split folder (e.g. cache/tusz/train)")
    p.add_argument("--split", required=True, help="split name recorded with the outputs")
    p.add_argument("--limit-files", type=_positive_int, default=None,
                   help="build at most N recordings (also BGB_LIMIT_FILES, BGB_SMOKE_TEST=1: 3)")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes (default: all cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--layout", choices=CACHE_LAYOUTS, default=_default_layout(),
                   help="windows: <stem>_windows.npz (default); continuous: <stem>_data.npy + "
                        "<stem>_labels.npy, a sixth of the disk (also EEG_ASSETS_CACHE_LAYOUT)")
    p.set_defaults(func=_cmd_build_cache)

    p = _command(sub, "convert-cache", help="rebuild a cache split in the other layout from its "
                 "cache files (no EDF read; verified, incremental, atomic)")
    p.add_argument("--from", dest="source", required=True, type=_existing_path,
                   help="cache split folder to read (its layout is read from its files)")
    p.add_argument("--to", dest="target", required=True,
                   help="cache split folder to write (e.g. cache/tusz_mmap/train)")
    p.add_argument("--layout", required=True, choices=CACHE_LAYOUTS, help="the target's layout")
    p.set_defaults(func=_cmd_convert_cache)

    p = _command(sub, "adopt-cache", help="after a lost ledger: take back the NPZs that verify "
                 "and match their recordings (the rest is rebuilt by the next build)")
    p.add_argument("--data-dir", required=True, type=_existing_path,
                   help="the split's TUSZ folder the cache was built from")
    p.add_argument("--cache-dir", required=True, type=_existing_path)
    p.set_defaults(func=_cmd_adopt_cache)

    p = _command(sub, "scan-cache", help="rebuild manifest.json by scanning the NPZs' labels")
    p.add_argument("--cache-dir", required=True)
    p.set_defaults(func=_cmd_scan_cache)

    p = _command(sub, "verify-cache",
                 help="verify the NPZs of a split (new ones, a sample, or all)")
    p.add_argument("--cache-dir", required=True)
    p.add_argument("--all", action="store_true",
                   help="open every NPZ, not only new or rebuilt ones and a 0.2%% sample")
    p.set_defaults(func=_cmd_verify_cache)

    p = _command(sub, "balanced-info", help="print the balanced training set of a split",
                 epilog=_BALANCE_FLAGS)
    p.add_argument("--cache-dir", required=True)
    p.add_argument("--seed", type=int, default=42, help="seed of the balanced draw (default 42)")
    p.set_defaults(func=_cmd_balanced_info)

    p = _command(sub, "upload-raw", help="upload new or changed raw recordings to the Modal "
                 "raw volume (incremental, resumable)")
    p.add_argument("--raw-root", default=None,
                   help="folder holding train/ dev/ eval/ (default: EEG_ASSETS_RAW_ROOT)")
    p.add_argument("--folder", action="append", default=None,
                   help="a TUSZ split folder to upload (repeatable; default: train, dev, eval)")
    p.set_defaults(func=_cmd_upload_raw)

    p = _command(sub, "modal-check", help="before a first Modal run: token, volumes, deployed "
                 "apps (one small round trip), and the time and cost of a full run")
    p.set_defaults(func=_cmd_modal_check)

    p = _command(sub, "score", help="score hypotheses against references: NEDC OVERLAP and "
                 "TAES, SzCORE pooled over files and averaged per subject",
                 epilog="formats, by suffix: NEDC .csv_bi/.csv files, or SzCORE's HED-SCORE "
                 "*_events.tsv files (BIDS); a reference and its hypothesis must share one. The "
                 "subject of a recording is the first _ field of its name (the TUSZ patient id), "
                 "or the label of a BIDS sub-<label>_ name.")
    p.add_argument("--ref", required=True, type=_existing_path,
                   help="folder of reference .csv_bi or *_events.tsv files (searched "
                   "recursively), or an NEDC list file (one path a line)")
    p.add_argument("--hyp", required=True, type=_existing_path,
                   help="folder of hypothesis files in the same format (paired with --ref by "
                   "file name), or a list file (paired by position)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--per-file", action="store_true",
                   help="add each pair's figures, and every subject's")
    p.set_defaults(func=_cmd_score)
    return parser


def main(argv: list[str] | None = None) -> int:
    from eeg_assets.lib.cache.ledger import LedgerError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (CommandError, LedgerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
