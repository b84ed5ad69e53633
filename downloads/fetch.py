"""Download helpers: fetching the weights and the datasets safely.

What a download needs before it can be trusted with a terabyte:
- a free-space check before anything is fetched (`check_free_space`);
- fetching to ``<name>.part`` and renaming only when complete (`download`), so an interrupted
  transfer never leaves a partial file under the final name, and a rerun resumes it;
- a sha256/size sidecar ``<name>.sha256`` (`write_sidecar`, `verify_file`), readable by
  ``sha256sum -c``;
- archive extraction that refuses members escaping the target folder (`extract_archive`);
- one `DownloadError` whose message names the URL or path and says what to do next.

A *source* is a Google Drive file id (fetched with gdown) or an http(s) URL (fetched with urllib;
the tests serve files from 127.0.0.1). A *fetcher* is any ``fetcher(source, dest)`` that writes the
whole file to ``dest`` or raises `DownloadError`.
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import inspect
import ipaddress
import os
import posixpath
import shutil
import socket
import sys
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from util.atomic import atomic_write_text
from util.errors import UserError
from util.outputs import run_command

GDRIVE_URL = 'https://drive.google.com/uc?id={}'
GDRIVE_HOST = ('drive.google.com', 443)
CONNECT_TIMEOUT_S = 10.0  # offline machines fail within this, instead of hanging
READ_TIMEOUT_S = 60.0  # a stalled Google Drive transfer fails after this long without a byte
URL_TIMEOUT_S = 30.0  # urllib has one timeout for connecting and for each read
CHUNK_BYTES = 1 << 20
PART_SUFFIX = '.part'
SIDECAR_SUFFIX = '.sha256'
MARKER_PREFIX = '.stcn_done_'
GB = 10**9  # disk sizes are quoted in decimal gigabytes, like df -H and the project README
HTML_SNIFF_BYTES = 512
USER_AGENT = 'stcn-downloader'

Fetcher = Callable[[str, Path], None]


class DownloadError(UserError, RuntimeError):
    """A failure the user can act on: `where` is the URL, file or folder, `fix` what to do."""


# ----------------------------------------------------------------------------------------------
# sources


def is_url(source: str) -> bool:
    """True for an http(s) URL, False for a Google Drive file id."""
    return urllib.parse.urlsplit(source).scheme in ('http', 'https')


def source_url(source: str) -> str:
    """The URL a source is fetched from, for messages."""
    return source if is_url(source) else GDRIVE_URL.format(source)


def resolve_source(source: str, filename: str, mirror: str | None) -> str:
    """``<mirror>/<filename>`` when a mirror (a folder of the same files over http) is given."""
    if mirror is None:
        return source
    return f"{mirror.rstrip('/')}/{urllib.parse.quote(filename)}"


# ----------------------------------------------------------------------------------------------
# disk space, hashes, sidecars, markers


def free_gb_arg(text: str) -> float:
    """argparse type of --min_free_gb: a number of gigabytes, 0 or more (0 disables the check)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected a number of GB, got {text!r}') from None
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f'{text} GB: must be 0 (no check) or more')
    return value


def format_gb(num_bytes: float) -> str:
    return f'{num_bytes / GB:.1f} GB'


def free_bytes(path: Path) -> int:
    """Free space on the filesystem that holds ``path`` (or its nearest existing parent)."""
    probe = Path(path).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def check_free_space(path: Path, needed: float, how_to_override: str = '') -> None:
    """Raise `DownloadError` unless ``needed`` bytes are free where ``path`` lives.

    ``how_to_override`` completes the advice, e.g. 'choose another --root'.
    """
    free = free_bytes(path)
    if free < needed:
        hint = f', or {how_to_override}' if how_to_override else ''
        raise DownloadError(path, f'not enough free disk space: about {format_gb(needed)} needed, '
                            f'{format_gb(free)} free', f'free some space{hint}')


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(CHUNK_BYTES), b''):
            digest.update(block)
    return digest.hexdigest()


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


def write_sidecar(path: Path, digest: str | None = None) -> str:
    """Record size and sha256 of ``path`` next to it (``sha256sum -c`` format); returns the hash."""
    path = Path(path)
    digest = digest or sha256_file(path)
    text = f'# size {path.stat().st_size}\n{digest}  {path.name}\n'
    atomic_write_text(sidecar_path(path), text)
    return digest


def read_sidecar(path: Path) -> tuple[str, int | None] | None:
    """(sha256, size) recorded for ``path``, or None when there is no sidecar."""
    side = sidecar_path(Path(path))
    if not side.is_file():
        return None
    digest, size = None, None
    for line in side.read_text().splitlines():
        if line.startswith('# size '):
            size = int(line.split()[2])
        elif line.strip() and not line.startswith('#'):
            digest = line.split()[0].lower()
    if digest is None:
        raise DownloadError(side, 'holds no sha256', 'delete it and rerun to record a new one')
    return digest, size


def verify_file(path: Path) -> bool | None:
    """True/False when ``path`` matches/mismatches its sidecar; None when it has none."""
    recorded = read_sidecar(path)
    if recorded is None:
        return None
    digest, size = recorded
    if size is not None and Path(path).stat().st_size != size:
        return False  # cheap check first: no need to hash a truncated file
    return sha256_file(path) == digest


def marker_path(folder: Path, name: str) -> Path:
    return Path(folder) / f'{MARKER_PREFIX}{name}'


def is_done(folder: Path, name: str) -> bool:
    return marker_path(folder, name).is_file()


def mark_done(folder: Path, name: str) -> None:
    """Write the marker that lets a rerun skip this finished step."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    atomic_write_text(marker_path(folder, name), f'{name} finished\n')


# ----------------------------------------------------------------------------------------------
# fetchers


def _opener(url: str) -> urllib.request.OpenerDirector:
    """A urllib opener: proxies from the environment, except for loopback addresses."""
    host = urllib.parse.urlsplit(url).hostname or ''
    try:
        loopback = host == 'localhost' or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    handlers = [urllib.request.ProxyHandler({})] if loopback else []
    return urllib.request.build_opener(*handlers)


def fetch_url(url: str, dest: Path, *, timeout: float = URL_TIMEOUT_S, quiet: bool = True) -> None:
    """Fetch ``url`` into ``dest`` with urllib, continuing a partial ``dest`` if the server can.

    Raises `DownloadError` with the bare reason; `download` adds what to do about it.
    """
    dest = Path(dest)
    start = dest.stat().st_size if dest.exists() else 0
    headers = {'User-Agent': USER_AGENT}
    if start:
        headers['Range'] = f'bytes={start}-'
    request = urllib.request.Request(url, headers=headers)
    try:
        response = _opener(url).open(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == http.client.REQUESTED_RANGE_NOT_SATISFIABLE and start:
            return  # nothing left to send: the partial file is already whole
        raise DownloadError(url, f'HTTP {e.code} {e.reason}') from None
    except (OSError, http.client.HTTPException) as e:
        raise DownloadError(url, _reason(e)) from None
    with response:
        # a server that ignores Range answers 200 with the whole file: start over
        offset = start if response.status == http.client.PARTIAL_CONTENT else 0
        length = response.headers.get('Content-Length')
        expected = int(length) if length is not None else None
        bar = _progress_bar(offset + expected if expected is not None else None, quiet)
        received = 0
        try:
            with open(dest, 'ab' if offset else 'wb') as f:
                while block := response.read(CHUNK_BYTES):
                    f.write(block)
                    received += len(block)
                    bar.update(offset + received)
        except (OSError, http.client.HTTPException) as e:
            raise DownloadError(url, f'transfer interrupted after {received} bytes: {_reason(e)}') from None
        finally:
            bar.finish()
    if expected is not None and received != expected:
        raise DownloadError(url, f'transfer incomplete: received {received} of {expected} bytes')


def _check_reachable(host: tuple[str, int], timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail fast when ``host`` cannot be reached directly (skipped when a proxy is configured)."""
    if urllib.request.getproxies().get('https'):
        return
    try:
        with socket.create_connection(host, timeout=timeout):
            pass
    except OSError as e:
        raise DownloadError(host[0], f'cannot reach {host[0]} ({_reason(e)})') from None


def fetch_gdrive(file_id: str, dest: Path, *, timeout: float = READ_TIMEOUT_S,
                 quiet: bool = False) -> None:
    """Fetch a Google Drive file with gdown (resuming its own partial file when it can)."""
    import gdown  # imported here so the rest of the module works without it

    _check_reachable(GDRIVE_HOST)
    kwargs = {'id': file_id, 'output': str(dest), 'quiet': quiet, 'resume': True}
    supports_timeout = 'timeout' in inspect.signature(gdown.download).parameters
    if supports_timeout:  # gdown >= 5.2; older ones get the socket default below
        kwargs['timeout'] = (CONNECT_TIMEOUT_S, timeout)
    previous = socket.getdefaulttimeout()
    if not supports_timeout:
        socket.setdefaulttimeout(timeout)
    try:
        result = gdown.download(**kwargs)
    except Exception as e:  # gdown raises its own, requests' and OS errors: all mean "failed"
        raise DownloadError(file_id, _reason(e)) from None
    finally:
        socket.setdefaulttimeout(previous)
    if result is None or not Path(dest).is_file():
        raise DownloadError(file_id, 'gdown could not retrieve the file (access denied or quota exceeded?)')


def default_fetcher(source: str, dest: Path) -> None:
    """URLs through urllib, Google Drive ids through gdown."""
    if is_url(source):
        fetch_url(source, dest, quiet=False)
    else:
        fetch_gdrive(source, dest)


def _reason(error: BaseException) -> str:
    """A one-line reason for a network error."""
    if isinstance(error, urllib.error.URLError) and not isinstance(error, urllib.error.HTTPError):
        error = error.reason if isinstance(error.reason, BaseException) else error
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


class _NoBar:
    def update(self, value: int) -> None:
        pass

    def finish(self) -> None:
        pass


def _progress_bar(total: int | None, quiet: bool):
    if quiet:
        return _NoBar()
    import progressbar

    return progressbar.DataTransferBar(
        max_value=total if total else progressbar.UnknownLength, fd=sys.stderr).start()


# ----------------------------------------------------------------------------------------------
# download to a temporary name


def _looks_like_html(path: Path) -> bool:
    with open(path, 'rb') as f:
        head = f.read(HTML_SNIFF_BYTES).lstrip().lower()
    return head.startswith((b'<!doctype html', b'<html'))


def download(source: str, dest: Path, *, fetcher: Fetcher | None = None,
             validate: Callable[[Path], None] | None = None) -> Path:
    """Fetch ``source`` to ``dest`` via ``dest.part``; rename only once the file is complete.

    ``validate(part)`` may raise `DownloadError` to reject a complete but wrong file (it is then
    deleted). After a failed transfer a non-empty ``.part`` is kept so that a rerun resumes it,
    and the error says where a manually downloaded copy should go.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + PART_SUFFIX)
    url = source_url(source)
    print(f'downloading {url} -> {dest}', flush=True)
    try:
        (fetcher or default_fetcher)(source, part)
    except DownloadError as e:
        if part.exists() and part.stat().st_size == 0:
            part.unlink()
        kept = f' (partial data kept in {part}; rerun to resume)' if part.exists() else ''
        raise DownloadError(url, f'could not download ({e.problem}){kept}',
                            f'if this machine cannot reach it, download the file elsewhere, save it as {dest} '
                            'and rerun this command') from None
    if not part.is_file():
        raise DownloadError(url, 'the download produced no file', f'save it manually as {dest}')
    try:
        if _looks_like_html(part):
            raise DownloadError(url, 'sent a web page instead of the file (Google Drive does this when its '
                                'download quota is exceeded)',
                                f'open it in a browser, save the file as {dest} and rerun')
        if validate is not None:
            validate(part)
    except DownloadError:
        part.unlink()
        raise
    os.replace(part, dest)
    return dest


# ----------------------------------------------------------------------------------------------
# safe extraction


def _unsafe_reason(name: str) -> str | None:
    """Why an archive member name would land outside the target folder (None when it is safe).

    Extraction goes into a fresh staging folder, so no symbolic link already on disk can
    redirect a member; links inside tar archives are checked by `_check_tar_member`.
    """
    posix = PurePosixPath(name.replace('\\', '/'))
    if posix.is_absolute() or (posix.parts and posix.parts[0].endswith(':')):
        return 'absolute path'
    if '..' in posix.parts:
        return "'..' component"
    return None


def _check_tar_member(member: tarfile.TarInfo) -> str | None:
    """Like `_unsafe_reason`, also refusing links that point outside and special files."""
    reason = _unsafe_reason(member.name)
    if reason:
        return reason
    if member.issym():
        link_target = posixpath.normpath(posixpath.join(posixpath.dirname(member.name),
                                                        member.linkname))
        if member.linkname.startswith('/') or _unsafe_reason(link_target):
            return 'symbolic link pointing outside'
    if member.islnk() and _unsafe_reason(member.linkname):
        return 'hard link pointing outside'
    if member.ischr() or member.isblk() or member.isfifo():
        return 'device or pipe'
    return None


def extract_archive(archive: Path, dest: Path) -> None:
    """Extract a zip or tar(.gz/.bz2/.xz) into ``dest``, refusing members that would escape it.

    Every member is checked before anything is written.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    damaged = f'the file is probably incomplete or damaged: delete {archive} and rerun to download it again'
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for name in zf.namelist():
                    _refuse_if_unsafe(archive, name, _unsafe_reason(name))
                zf.extractall(dest)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                members = tf.getmembers()
                for member in members:
                    _refuse_if_unsafe(archive, member.name, _check_tar_member(member))
                extra = {'filter': 'data'} if hasattr(tarfile, 'data_filter') else {}
                tf.extractall(dest, members=members, **extra)
        else:
            raise DownloadError(archive, 'neither a zip nor a tar archive', damaged)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, ValueError) as e:
        raise DownloadError(archive, f'could not extract ({_reason(e)})', damaged) from None
    except OSError as e:  # disk full, permissions: the archive itself may be fine
        raise DownloadError(archive, f'could not extract into {dest} ({_reason(e)})') from None


def _refuse_if_unsafe(archive: Path, member: str, reason: str | None) -> None:
    if reason:
        raise DownloadError(archive, f'refusing to extract: member {member!r} ({reason}) would be written '
                            'outside the target folder', 'the archive is not the expected one, delete it')


IGNORED_TOP_LEVEL = ('__MACOSX',)  # junk folders some zip tools add
DATA_FOLDERS = ('JPEGImages', 'Annotations', 'ImageSets')  # never stripped as a wrapper


def merge_tree(src: Path, dst: Path) -> None:
    """Move ``src`` onto ``dst``: renames where possible, merging folders that already exist."""
    if not dst.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
    elif src.is_dir() and dst.is_dir():
        for child in list(src.iterdir()):
            merge_tree(child, dst / child.name)
        src.rmdir()
    elif src.is_dir() or dst.is_dir():
        raise DownloadError(src, f'cannot merge into {dst}: one is a folder, the other a file')
    else:
        os.replace(src, dst)


def extract_into(archive: Path, target: Path, *, strip_top: bool) -> None:
    """Extract ``archive`` into ``target`` through a staging folder next to it.

    With ``strip_top``, an archive that wraps everything in one folder (``DAVIS/...``) has its
    contents placed directly in ``target``.
    """
    target = Path(target)
    staging = target.with_name(f'.{target.name}.extracting')
    if staging.exists():  # left by an interrupted run: ours to redo
        shutil.rmtree(staging)
    extract_archive(archive, staging)
    for junk in IGNORED_TOP_LEVEL:
        if (staging / junk).exists():
            shutil.rmtree(staging / junk)
    content = staging
    entries = list(staging.iterdir())
    if (strip_top and len(entries) == 1 and entries[0].is_dir()
            and entries[0].name not in DATA_FOLDERS):
        content = entries[0]
    target.mkdir(parents=True, exist_ok=True)
    for child in list(content.iterdir()):
        merge_tree(child, target / child.name)
    shutil.rmtree(staging)


# ----------------------------------------------------------------------------------------------
# one archive: fetch -> extract -> delete, resumable


@dataclass(frozen=True)
class ArchiveJob:
    """One published archive and where its contents go (paths relative to the data root)."""
    name: str  # also names the finished-marker
    source: str  # Google Drive id or URL
    archive: str  # where the archive is saved
    target: str  # folder it is extracted into
    download_gb: float  # rough archive size, for the free-space estimate
    strip_top: bool = True
    expect: tuple[str, ...] = ()  # entries that must exist in target afterwards


SPACE_MARGIN = 1.2  # the sizes are rough; for BL30K this gives the README's "~1 TB"


def needed_bytes(jobs: Sequence[ArchiveJob], extra_gb: float = 0.0) -> float:
    """Disk needed to run ``jobs`` one after the other.

    All extracted data (about the archive size: images barely compress) plus the largest
    archive, which is deleted once extracted, plus ``extra_gb``, with a safety margin.
    """
    if not jobs:
        return 0.0
    sizes = [job.download_gb for job in jobs]
    return (sum(sizes) + max(sizes) + extra_gb) * SPACE_MARGIN * GB


def run_archive_job(job: ArchiveJob, root: Path, *, fetcher: Fetcher | None = None,
                    mirror: str | None = None, keep_archive: bool = False) -> None:
    """Download, extract and delete one archive; a finished job (marker present) is skipped.

    An archive already at its final path (an earlier run, or a manual download) is used as is.
    """
    root = Path(root)
    target, archive = root / job.target, root / job.archive
    if is_done(target, job.name):
        print(f'[{job.name}] already done ({marker_path(target, job.name)})')
        if archive.exists() and not keep_archive:
            print(f'[{job.name}] note: {archive} is left over; delete it to free space')
        return
    if archive.is_file():
        print(f'[{job.name}] using {archive} found on disk')
    else:
        download(resolve_source(job.source, archive.name, mirror), archive, fetcher=fetcher)
    print(f'[{job.name}] extracting {archive} -> {target}', flush=True)
    extract_into(archive, target, strip_top=job.strip_top)
    missing = [entry for entry in job.expect if not (target / entry).exists()]
    if missing:
        raise DownloadError(archive, f'extracted into {target} but {target / missing[0]} is missing: the '
                            'archive does not have the expected layout', 'it is kept; please report this')
    mark_done(target, job.name)
    if not keep_archive:
        archive.unlink()
    print(f'[{job.name}] done')


# ----------------------------------------------------------------------------------------------
# user interaction


def pending_steps(names: Sequence[str], finished: Callable[[str], bool]) -> list[str]:
    """``names`` that are not ``finished`` yet, in order; each finished one is reported as skipped."""
    pending = [name for name in names if not finished(name)]
    for name in names:
        if name not in pending:
            print(f'[{name}] already done, skipping')
    return pending


ACCEPT_QUESTION = 'Do you accept these terms and want to start?'
OVERRIDE_ESTIMATE = 'choose another --root, or pass --min_free_gb N to override the estimate'


def confirm_plan(root: Path, estimate: float, min_free_gb: float | None, plan: str, terms: Sequence[str],
                 assume_yes: bool) -> None:
    """What the dataset downloads do before fetching anything: check the free space under ``root``
    (``estimate`` bytes, or --min_free_gb's ``min_free_gb`` when given), print ``plan`` and the
    ``terms`` of use, and ask the user to accept them (`confirm`)."""
    required = estimate if min_free_gb is None else min_free_gb * GB
    check_free_space(root, required, OVERRIDE_ESTIMATE)
    print(plan)
    print('\nterms of use:')
    for text in terms:
        print(f'  - {text}')
    confirm(ACCEPT_QUESTION, assume_yes)


def run_download_command(parser: argparse.ArgumentParser, argv: list[str] | None,
                         run: Callable[[argparse.Namespace], int], resume_hint: str) -> int:
    """The main() of a download command: parse ``argv`` and return ``run(args)``'s exit status; user
    errors, OSError (e.g. an unwritable --root) and interrupts end in one line (`util.outputs.run_command`)."""
    args = parser.parse_args(argv)
    return run_command(lambda: run(args), resume_hint=resume_hint)


def confirm(question: str, assume_yes: bool) -> None:
    """Ask a yes/no question on the terminal; raise `DownloadError` unless the answer is yes."""
    if assume_yes:
        return
    if not sys.stdin or not sys.stdin.isatty():
        raise DownloadError('--yes', 'input is not a terminal, so nobody can accept the terms above',
                            'read them and rerun with --yes')
    try:
        answer = input(f'{question} [y/N] ').strip().lower()
    except EOFError:
        answer = ''
    if answer not in ('y', 'yes'):
        raise DownloadError('--yes', 'not confirmed', 'nothing was downloaded')
