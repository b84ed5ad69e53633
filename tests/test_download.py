"""Download, verify, resume and extract logic, offline: archives are built here and served from
127.0.0.1; nothing touches the internet."""
from __future__ import annotations

import hashlib
import http.server
import io
import re
import socket
import subprocess
import sys
import tarfile
import threading
import urllib.parse
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

import download_bl30k
import download_datasets
import download_model
from downloads import fetch as dl
from downloads import model as model_dl

# ----------------------------------------------------------------------------------------------
# fixtures: a local HTTP server (Range-capable; /truncated/<name> drops the connection midway)


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.requests.append((self.path, self.headers.get('Range')))
        truncate = self.path.startswith('/truncated/')
        name = urllib.parse.unquote(self.path.removeprefix('/truncated/').lstrip('/'))
        file = self.server.root / name
        if not file.is_file():
            self.send_error(404, 'Not Found')
            return
        data = file.read_bytes()
        start, ranged = 0, self.headers.get('Range')
        if ranged and not truncate:
            start = int(ranged.removeprefix('bytes=').split('-')[0])
            if start >= len(data):
                self.send_error(416, 'Range Not Satisfiable')
                return
            self.send_response(206)
            self.send_header('Content-Range', f'bytes {start}-{len(data) - 1}/{len(data)}')
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body[:len(body) // 2] if truncate else body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp('served')  # outside tmp_path, which holds what tests fetch
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _Handler)
    httpd.root, httpd.requests = root, []
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield SimpleNamespace(root=root, url=f'http://127.0.0.1:{httpd.server_port}',
                          requests=httpd.requests)
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def dead_url():
    """A URL on a local port nobody listens on."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    return f'http://127.0.0.1:{port}'


@pytest.fixture(autouse=True)
def no_internet(monkeypatch):
    """Any attempt to use gdown (i.e. Google Drive) fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError('a test tried to reach Google Drive')
    monkeypatch.setattr(dl, 'fetch_gdrive', refuse)


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, 'w') as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def make_tar(path: Path, members: dict[str, bytes], mode: str = 'w') -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, mode) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


STATE_DICT_CONTRACT = Path(__file__).parent / 'fixtures' / 'stcn-state-dict.tsv'
S2M_CONTRACT = Path(__file__).parent / 'fixtures' / 's2m-state-dict.tsv'
FUSION_CONTRACT = Path(__file__).parent / 'fixtures' / 'fusion-stcn-state-dict.tsv'


def contract_shapes(contract: Path = STATE_DICT_CONTRACT) -> dict[str, tuple[int, ...]]:
    """Key -> shape of a released file (default stcn.pth), from its contract file (not from the code under test)."""
    rows = contract.read_text().splitlines()[1:]
    return {key: tuple(int(v) for v in shape.strip('()').split(',') if v.strip())
            for key, shape, _ in (row.split('\t') for row in rows)}


def fake_checkpoint(path: Path, shapes: dict[str, tuple[int, ...]] | None = None) -> Path:
    """A file with the released model's keys and shapes (default), a few KB: every tensor is a
    broadcast view of one zero, which torch.save stores as that one value."""
    import torch

    shapes = contract_shapes() if shapes is None else shapes
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({key: torch.zeros(()).expand(shape) for key, shape in shapes.items()}, path)
    return path


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob('*') if p.is_file()) if folder.exists() else []


# ----------------------------------------------------------------------------------------------
# download to a temporary name


def test_download_from_local_server(server, tmp_path):
    data = bytes(range(256)) * 1000
    (server.root / 'blob.bin').write_bytes(data)
    dest = tmp_path / 'out' / 'blob.bin'
    assert dl.download(f'{server.url}/blob.bin', dest, fetcher=dl.fetch_url) == dest
    assert dest.read_bytes() == data
    assert files_under(tmp_path / 'out') == [dest]


def test_unreachable_url_gives_clear_error_and_no_file(dead_url, tmp_path):
    dest = tmp_path / 'x.zip'
    with pytest.raises(dl.DownloadError) as err:
        dl.download(f'{dead_url}/x.zip', dest, fetcher=dl.fetch_url)
    message = str(err.value)
    assert f'{dead_url}/x.zip' in message and f'save it as {dest}' in message
    assert '\n' not in message
    assert files_under(tmp_path) == []


def test_http_error_is_reported(server, tmp_path):
    with pytest.raises(dl.DownloadError, match='HTTP 404'):
        dl.download(f'{server.url}/missing.zip', tmp_path / 'missing.zip', fetcher=dl.fetch_url)
    assert files_under(tmp_path / 'missing.zip') == []
    assert not (tmp_path / 'missing.zip').exists()


def test_interrupted_transfer_keeps_part_and_resumes(server, tmp_path):
    data = b'0123456789' * 5000
    (server.root / 'big.bin').write_bytes(data)
    dest = tmp_path / 'big.bin'
    with pytest.raises(dl.DownloadError, match='rerun to resume'):
        dl.download(f'{server.url}/truncated/big.bin', dest, fetcher=dl.fetch_url)
    part = tmp_path / 'big.bin.part'
    assert not dest.exists() and 0 < part.stat().st_size < len(data)

    dl.download(f'{server.url}/big.bin', dest, fetcher=dl.fetch_url)
    assert dest.read_bytes() == data and not part.exists()
    assert server.requests[-1][1] == f'bytes={len(data) // 2}-'  # continued, not restarted


def test_web_page_instead_of_file_is_rejected(server, tmp_path):
    (server.root / 'quota.zip').write_text('<!DOCTYPE html><html>quota exceeded</html>')
    dest = tmp_path / 'quota.zip'
    with pytest.raises(dl.DownloadError, match='web page'):
        dl.download(f'{server.url}/quota.zip', dest, fetcher=dl.fetch_url)
    assert files_under(tmp_path) == []


def test_gdrive_fetch_turns_gdown_failures_into_download_errors(monkeypatch, tmp_path):
    gdown = pytest.importorskip('gdown')
    monkeypatch.undo()  # the real fetch_gdrive, with gdown itself faked below
    monkeypatch.setattr(dl, '_check_reachable', lambda host: None)
    calls = []

    def failing(**kwargs):
        calls.append(kwargs)
        raise gdown.exceptions.FileURLRetrievalError('Too many users have viewed or downloaded')
    monkeypatch.setattr(gdown, 'download', failing)
    dest = tmp_path / 'm.pth'
    with pytest.raises(dl.DownloadError) as err:
        dl.download('SOME_ID', dest)
    assert 'https://drive.google.com/uc?id=SOME_ID' in str(err.value)
    assert 'Too many users' in str(err.value) and not dest.exists()
    assert calls[0]['id'] == 'SOME_ID' and calls[0]['output'] == str(dest) + '.part'

    def working(**kwargs):
        fake_checkpoint(Path(kwargs['output']))
        return kwargs['output']
    monkeypatch.setattr(gdown, 'download', working)
    dl.download('SOME_ID', dest)
    assert zipfile.is_zipfile(dest)


def test_gdrive_unreachable_fails_fast(monkeypatch, tmp_path):
    monkeypatch.undo()

    def refused(address, timeout):
        raise ConnectionRefusedError('Connection refused')
    monkeypatch.setattr(dl.socket, 'create_connection', refused)
    monkeypatch.setattr(dl.urllib.request, 'getproxies', dict)
    with pytest.raises(dl.DownloadError, match='cannot reach drive.google.com'):
        dl.download('SOME_ID', tmp_path / 'x')


# ----------------------------------------------------------------------------------------------
# sidecars, markers, free space


def test_sidecar_records_and_verifies(tmp_path):
    path = tmp_path / 'model.pth'
    path.write_bytes(b'abcdef')
    assert dl.verify_file(path) is None
    digest = dl.write_sidecar(path)
    assert digest == hashlib.sha256(b'abcdef').hexdigest()
    assert dl.verify_file(path) is True
    path.write_bytes(b'abcdeX')  # same size, other content
    assert dl.verify_file(path) is False
    path.write_bytes(b'abc')
    assert dl.verify_file(path) is False
    if sys.platform.startswith('linux'):  # the sidecar is sha256sum -c compatible
        path.write_bytes(b'abcdef')
        check = subprocess.run(['sha256sum', '-c', 'model.pth.sha256'], cwd=tmp_path,
                               capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr


def test_free_space_check_fails_with_clear_message(monkeypatch, tmp_path):
    monkeypatch.setattr(dl.shutil, 'disk_usage',
                        lambda path: SimpleNamespace(total=10 * dl.GB, used=9 * dl.GB, free=dl.GB))
    dl.check_free_space(tmp_path / 'not' / 'yet', 0.5 * dl.GB)
    with pytest.raises(dl.DownloadError) as err:
        dl.check_free_space(tmp_path / 'not' / 'yet', 5 * dl.GB, 'pass --min_free_gb')
    message = str(err.value)
    assert str(tmp_path / 'not' / 'yet') in message
    assert '5.0 GB needed' in message and '1.0 GB free' in message and '--min_free_gb' in message


# ----------------------------------------------------------------------------------------------
# extraction


@pytest.mark.parametrize('kind', ['zip', 'tar', 'tar.gz'])
def test_extract_strips_single_wrapper_folder(tmp_path, kind):
    members = {'DAVIS/JPEGImages/480p/v/00000.jpg': b'jpg',
               'DAVIS/Annotations/480p/v/00000.png': b'png'}
    archive = tmp_path / f'a.{kind}'
    if kind == 'zip':
        make_zip(archive, members)
    else:
        make_tar(archive, members, 'w:gz' if kind == 'tar.gz' else 'w')
    target = tmp_path / 'data' / '2016'
    dl.extract_into(archive, target, strip_top=True)
    assert (target / 'JPEGImages/480p/v/00000.jpg').read_bytes() == b'jpg'
    assert (target / 'Annotations/480p/v/00000.png').read_bytes() == b'png'
    assert sorted(p.name for p in (tmp_path / 'data').iterdir()) == ['2016']  # staging removed


def test_extract_merges_into_existing_folder_without_stripping_data_folders(tmp_path):
    target = tmp_path / 'BL30K'
    dl.extract_into(make_tar(tmp_path / 'a.tar', {'JPEGImages/v1/0.jpg': b'1'}), target,
                    strip_top=True)
    dl.extract_into(make_tar(tmp_path / 'b.tar', {'BL30K/JPEGImages/v2/0.jpg': b'2'}), target,
                    strip_top=True)
    assert sorted(p.name for p in (target / 'JPEGImages').iterdir()) == ['v1', 'v2']


def _symlink_tar(path: Path) -> Path:
    with tarfile.open(path, 'w') as tf:
        info = tarfile.TarInfo('data/link')
        info.type, info.linkname = tarfile.SYMTYPE, '../../../outside'
        tf.addfile(info)
    return path


@pytest.mark.parametrize('build', [
    lambda p: make_zip(p / 'evil.zip', {'ok.txt': b'ok', '../evil.txt': b'x'}),
    lambda p: make_tar(p / 'evil.tar', {'ok.txt': b'ok', '../evil.txt': b'x'}),
    lambda p: make_tar(p / 'abs.tar', {'ok.txt': b'ok', '/tmp/evil.txt': b'x'}),
    lambda p: _symlink_tar(p / 'link.tar'),
], ids=['zip-dotdot', 'tar-dotdot', 'tar-absolute', 'tar-symlink'])
def test_malicious_members_are_refused(tmp_path, build):
    archive = build(tmp_path)
    target = tmp_path / 'deep' / 'target'
    with pytest.raises(dl.DownloadError, match='refusing to extract'):
        dl.extract_archive(archive, target)
    assert files_under(target) == [] and not (tmp_path / 'deep' / 'evil.txt').exists()


def test_links_that_stay_inside_are_extracted(tmp_path):
    archive = tmp_path / 'links.tar'
    with tarfile.open(archive, 'w') as tf:
        data = tarfile.TarInfo('data/frames/00000.jpg')
        data.size = 1
        tf.addfile(data, io.BytesIO(b'j'))
        link = tarfile.TarInfo('data/first.jpg')
        link.type, link.linkname = tarfile.SYMTYPE, 'frames/00000.jpg'
        tf.addfile(link)
    dl.extract_archive(archive, tmp_path / 'out')
    assert (tmp_path / 'out' / 'data' / 'first.jpg').read_bytes() == b'j'


def test_damaged_archive_is_reported_and_kept(tmp_path):
    good = make_zip(tmp_path / 'good.zip', {'a/x.bin': b'x' * 10000})
    damaged = tmp_path / 'damaged.zip'
    damaged.write_bytes(good.read_bytes()[:-200])
    with pytest.raises(dl.DownloadError, match='delete .*damaged.zip and rerun'):
        dl.extract_into(damaged, tmp_path / 'target', strip_top=True)
    assert damaged.exists()


# ----------------------------------------------------------------------------------------------
# one archive job: fetch -> extract -> delete -> marker


def test_archive_job_downloads_extracts_deletes_and_skips(server, tmp_path):
    make_zip(server.root / 'train.zip', {'train/JPEGImages/v/0.jpg': b'j',
                                         'train/Annotations/v/0.png': b'p'})
    job = dl.ArchiveJob('yv', 'UNUSED_ID', 'YouTube/train.zip', 'YouTube/train', 0.001,
                        expect=('JPEGImages', 'Annotations'))
    root = tmp_path / 'root'
    dl.run_archive_job(job, root, mirror=server.url)
    assert (root / 'YouTube/train/JPEGImages/v/0.jpg').read_bytes() == b'j'
    assert not (root / 'YouTube/train.zip').exists()
    assert dl.is_done(root / 'YouTube/train', 'yv')
    count = len(server.requests)
    dl.run_archive_job(job, root, mirror=server.url)
    assert len(server.requests) == count


def test_archive_job_uses_a_manually_placed_archive(tmp_path):
    root = tmp_path / 'root'
    make_zip(root / 'static' / 'static_data.zip', {'fss/a/1.jpg': b'1', 'ecssd/2.jpg': b'2'})
    job = download_datasets.PARTS['static']

    def offline(source, dest):
        raise AssertionError('must not download when the archive is already there')
    dl.run_archive_job(job, root, fetcher=offline)
    assert sorted(p.name for p in (root / 'static').iterdir()) == [
        '.stcn_done_static', 'ecssd', 'fss']


def test_archive_job_with_unexpected_layout_keeps_archive(tmp_path):
    root = tmp_path / 'root'
    archive = make_zip(root / 'x.zip', {'something/else.txt': b'?'})
    job = dl.ArchiveJob('x', 'ID', 'x.zip', 'x', 0.001, expect=('JPEGImages',))
    with pytest.raises(dl.DownloadError, match='expected layout'):
        dl.run_archive_job(job, root)
    assert archive.exists() and not dl.is_done(root / 'x', 'x')


# ----------------------------------------------------------------------------------------------
# download_model


def test_ensure_model_downloads_records_skips_and_verifies(server, tmp_path):
    fake_checkpoint(server.root / 'stcn.pth')
    url = f'{server.url}/stcn.pth'
    path = tmp_path / 'saves' / 'stcn.pth'
    assert model_dl.ensure_model(path, source=url) == path
    assert dl.verify_file(path) is True
    count = len(server.requests)
    model_dl.ensure_model(path, source=url)  # present and intact: no request
    assert len(server.requests) == count

    damaged = path.read_bytes()[:-10] + b'0123456789'
    path.write_bytes(damaged)
    with pytest.raises(dl.DownloadError, match='--force'):
        model_dl.ensure_model(path, source=url)
    assert path.read_bytes() == damaged  # reported, never silently deleted
    model_dl.ensure_model(path, source=url, force=True)
    assert path.read_bytes() == (server.root / 'stcn.pth').read_bytes()
    assert dl.verify_file(path) is True


def test_ensure_model_records_a_manually_placed_file(tmp_path):
    path = fake_checkpoint(tmp_path / 'stcn_s03.pth')
    assert model_dl.ensure_model(path, 's03', fetcher=None) == path
    assert dl.verify_file(path) is True


def test_ensure_model_rejects_a_file_that_is_not_a_checkpoint(server, tmp_path):
    (server.root / 'bad.pth').write_bytes(b'not a zip at all')
    path = tmp_path / 'stcn.pth'
    with pytest.raises(dl.DownloadError, match='not a PyTorch checkpoint'):
        model_dl.ensure_model(path, source=f'{server.url}/bad.pth')
    assert files_under(tmp_path) == []


def test_download_model_main_prints_where_and_how(server, tmp_path, capsys):
    fake_checkpoint(server.root / 'm.pth')
    out = tmp_path / 'm.pth'
    assert download_model.main(['--source', f'{server.url}/m.pth', '--output', str(out)]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and f'python eval_davis.py --model {out}' in printed
    assert printed.strip().splitlines()[-1].startswith(f'the model is {out}; ')  # the last line says where it is


# ----------------------------------------------------------------------------------------------
# CLIs: offline errors, confirmation, end to end through a local mirror


def _assert_one_error_line(capsys, must_contain: str) -> None:
    err = capsys.readouterr().err.strip()
    assert err.startswith('error: ') and '\n' not in err and 'Traceback' not in err
    assert must_contain in err


def test_cli_offline_errors(dead_url, tmp_path, capsys):
    out = tmp_path / 'saves' / 'stcn.pth'
    assert download_model.main(['--source', f'{dead_url}/stcn.pth', '--output', str(out)]) == 1
    _assert_one_error_line(capsys, f'{dead_url}/stcn.pth')

    common = ['--root', str(tmp_path), '--yes', '--mirror', dead_url, '--min_free_gb', '0']
    assert download_datasets.main(common + ['--only', 'davis16']) == 1
    _assert_one_error_line(capsys, f'save it as {tmp_path / "DAVIS" / "DAVIS-data.zip"}')

    assert download_bl30k.main(common + ['--only', 'c']) == 1
    _assert_one_error_line(capsys, f'{dead_url}/BL30K_c.tar')
    assert files_under(tmp_path) == []


def test_cli_unusable_paths_give_one_error_line(tmp_path, capsys):
    blocker = tmp_path / 'a_file'
    blocker.write_text('not a folder')
    args = ['--root', str(blocker), '--yes', '--min_free_gb', '0', '--mirror', 'http://127.0.0.1:9']
    assert download_datasets.main(args + ['--only', 'static']) == 1
    _assert_one_error_line(capsys, str(blocker))
    assert download_bl30k.main(args + ['--only', 'a']) == 1
    _assert_one_error_line(capsys, str(blocker))
    assert download_model.main(['--output', str(blocker / 'stcn.pth'), '--source',
                                'http://127.0.0.1:9/m']) == 1
    _assert_one_error_line(capsys, str(blocker))


def test_datasets_refuse_to_wait_for_an_answer_without_a_terminal(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(sys, 'stdin', io.StringIO(''))
    args = ['--root', str(tmp_path), '--only', 'davis', '--min_free_gb', '0']
    assert download_datasets.main(args) == 1
    _assert_one_error_line(capsys, '--yes')
    assert download_bl30k.main(['--root', str(tmp_path), '--min_free_gb', '0']) == 1
    _assert_one_error_line(capsys, '--yes')


def test_skipped_parts_plan_and_terms_are_printed_before_asking(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(sys, 'stdin', io.StringIO(''))
    dl.mark_done(tmp_path / 'DAVIS' / '2016', 'davis16')
    assert download_datasets.main(['--root', str(tmp_path), '--only', 'davis', '--min_free_gb', '0']) == 1
    out = capsys.readouterr().out.splitlines()
    # davis17 + test-dev + scribbles: (1.6 GB + the largest archive, 1.0 GB) x 1.2
    assert out[:2] == ['[davis16] already done, skipping',
                       f'will download into {tmp_path.resolve()} (about 3.1 GB of disk needed):']
    assert [line.split()[0] for line in out[2:5]] == ['davis17', 'davis17_testdev', 'davis17_scribbles']
    assert out[5:7] == ['', 'terms of use:'] and out[7].startswith('  - DAVIS (') and len(out) == 8

    dl.mark_done(tmp_path / 'BL30K', 'bl30k_a')
    assert download_bl30k.main(['--root', str(tmp_path), '--only', 'b', 'a', '--min_free_gb', '0']) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == ['[bl30k_a] already done, skipping',
                       f'will fetch 1 segment(s) of about 115 GB into {(tmp_path / "BL30K").resolve()}, one at a '
                       'time (about 276.0 GB of disk needed)']
    assert out[2:4] == ['', 'terms of use:'] and out[4].startswith('  - BL30K (') and len(out) == 5


def test_datasets_end_to_end_through_a_local_mirror(server, tmp_path, capsys):
    make_zip(server.root / 'DAVIS-data.zip', {'DAVIS/JPEGImages/480p/bear/00000.jpg': b'j',
                                              'DAVIS/Annotations/480p/bear/00000.png': b'p'})
    make_zip(server.root / 'static_data.zip', {'fss/cat/1.jpg': b'1', 'DUTS-TR/2.jpg': b'2'})
    root = tmp_path / 'data'
    args = ['--root', str(root), '--only', 'static', 'davis16', '--yes', '--mirror', server.url,
            '--min_free_gb', '0']
    assert download_datasets.main(args) == 0
    printed = capsys.readouterr().out
    assert 'YouTube-VOS' not in printed and 'DAVIS' in printed  # terms of the selected parts only
    assert printed.strip().splitlines()[-1] == f'wrote static to {root / "static"} and davis16 to {root / "DAVIS/2016"}'
    assert (root / 'DAVIS/2016/JPEGImages/480p/bear/00000.jpg').exists()
    assert (root / 'static/fss/cat/1.jpg').exists() and (root / 'static/DUTS-TR/2.jpg').exists()
    assert not list(root.rglob('*.zip'))
    count = len(server.requests)
    assert download_datasets.main(args) == 0
    assert len(server.requests) == count and 'nothing to do' in capsys.readouterr().out
    assert download_datasets.main(['--root', str(root), '--list']) == 0
    listing = capsys.readouterr().out
    assert re.search(r'^davis16 +done', listing, re.M)
    assert re.search(r'^yv19_train +to do', listing, re.M)


def test_davis_scribbles_are_merged_into_trainval(server, tmp_path, capsys):
    # the DAVIS site's archive wraps Scribbles/<video>/NNN.json in DAVIS/, as the frames' archive does
    make_zip(server.root / 'DAVIS-2017-trainval-480p.zip', {'DAVIS/JPEGImages/480p/bear/00000.jpg': b'j',
                                                            'DAVIS/Annotations/480p/bear/00000.png': b'p'})
    make_zip(server.root / 'DAVIS-2017-scribbles-trainval.zip', {'DAVIS/Scribbles/bear/001.json': b'{}'})
    root = tmp_path / 'data'
    args = ['--root', str(root), '--yes', '--mirror', server.url, '--min_free_gb', '0', '--only']
    assert download_datasets.main(args + ['davis17', 'davis17_scribbles']) == 0
    trainval = root / 'DAVIS/2017/trainval'
    assert (trainval / 'Scribbles/bear/001.json').read_bytes() == b'{}'
    assert (trainval / 'JPEGImages/480p/bear/00000.jpg').exists() and not list(root.rglob('*.zip'))
    assert capsys.readouterr().out.strip().splitlines()[-1].endswith(f'davis17_scribbles to {trainval}')
    # an archive without Scribbles/ is refused and kept, the part not marked finished
    other = tmp_path / 'other'
    make_zip(server.root / 'DAVIS-2017-scribbles-trainval.zip', {'DAVIS/Other/bear/001.json': b'{}'})
    assert download_datasets.main(['--root', str(other), *args[2:], 'davis17_scribbles']) == 1
    _assert_one_error_line(capsys, 'Scribbles is missing')
    assert (other / 'DAVIS/2017/DAVIS-2017-scribbles-trainval.zip').exists()
    assert not download_datasets.part_done(other, 'davis17_scribbles')


def test_archive_names_are_unique_so_a_flat_mirror_works():
    names = [Path(job.archive).name for job in download_datasets.PARTS.values()]
    names += [Path(job.archive).name for job in download_bl30k.SEGMENTS.values()]
    assert len(names) == len(set(names)) == 16


def test_datasets_free_space_check_comes_first(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(dl.shutil, 'disk_usage',
                        lambda path: SimpleNamespace(total=dl.GB, used=dl.GB, free=0))
    assert download_datasets.main(['--root', str(tmp_path), '--yes']) == 1
    _assert_one_error_line(capsys, '--min_free_gb')
    assert files_under(tmp_path) == []


def test_bl30k_segments_one_by_one_and_resume(server, tmp_path, capsys, monkeypatch):
    for letter in 'ab':
        make_tar(server.root / f'BL30K_{letter}.tar',
                 {f'BL30K/JPEGImages/{letter}_vid/00000.jpg': letter.encode(),
                  f'BL30K/Annotations/{letter}_vid/00000.png': letter.encode()})
    common = ['--root', str(tmp_path), '--yes', '--mirror', server.url]
    monkeypatch.setattr(dl.shutil, 'disk_usage',
                        lambda path: SimpleNamespace(total=2000 * dl.GB, used=0, free=500 * dl.GB))
    assert download_bl30k.main(common + ['--only', 'a', 'b', 'c']) == 1  # ~1 TB check
    _assert_one_error_line(capsys, 'GB needed')
    assert download_bl30k.main(common + ['--only', 'a', 'b', 'c', '--min_free_gb', '0']) == 1
    _assert_one_error_line(capsys, 'BL30K_c.tar')  # c is not served: a and b are kept
    target = tmp_path / 'BL30K'
    assert sorted(p.name for p in (target / 'JPEGImages').iterdir()) == ['a_vid', 'b_vid']
    assert dl.is_done(target, 'bl30k_a') and dl.is_done(target, 'bl30k_b')
    assert not list(target.glob('*.tar'))
    count = len(server.requests)
    assert download_bl30k.main(common + ['--only', 'a', 'b']) == 0
    assert len(server.requests) == count


def resnet18_shapes() -> dict[str, tuple[int, ...]]:
    """The keys and shapes of a torchvision ResNet-18 state dict: a torch file that is not STCN."""
    import torch
    import torchvision

    with torch.device('meta'):
        return {k: tuple(v.shape) for k, v in torchvision.models.resnet18(weights=None).state_dict().items()}


@pytest.mark.parametrize('shapes, problem', [
    (resnet18_shapes, 'missing'),
    (lambda: {**contract_shapes(), 'value_encoder.conv1.weight': (64, 4, 7, 7)}, 'wrong shape'),
    (lambda: {k: v for k, v in contract_shapes().items() if not k.startswith('decoder.')}, '22 missing'),
])
def test_ensure_model_refuses_a_file_at_the_target_that_is_not_stcn(tmp_path, capsys, shapes, problem):
    path = fake_checkpoint(tmp_path / 'saves' / 'stcn.pth', shapes())
    before = path.read_bytes()
    assert download_model.main(['--output', str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f'error: {path}: not the released STCN model') and err.count('\n') == 1
    assert problem in err and '--force' in err and 'move it away' in err
    assert path.read_bytes() == before and not dl.sidecar_path(path).exists()  # kept, and not trusted


def test_ensure_model_rechecks_a_file_whose_hash_an_older_version_recorded(tmp_path):
    path = fake_checkpoint(tmp_path / 'stcn.pth', resnet18_shapes())
    dl.write_sidecar(path)  # as the earlier download_model.py did for any file it found
    with pytest.raises(dl.DownloadError, match='not the released STCN model'):
        model_dl.ensure_model(path)


def test_ensure_model_refuses_a_downloaded_file_that_is_not_stcn(server, tmp_path, capsys):
    fake_checkpoint(server.root / 'other.pth', resnet18_shapes())
    path = tmp_path / 'saves' / 'stcn.pth'
    url = f'{server.url}/other.pth'
    assert download_model.main(['--source', url, '--output', str(path)]) == 1
    err = capsys.readouterr().err
    assert f'error: the file sent by {url}: not the released STCN model' in err and 'check --source' in err
    assert files_under(tmp_path) == []  # neither the file nor a hash was kept


def test_force_replaces_a_file_that_is_not_stcn(server, tmp_path):
    fake_checkpoint(server.root / 'stcn.pth')
    path = fake_checkpoint(tmp_path / 'stcn.pth', resnet18_shapes())
    model_dl.ensure_model(path, source=f'{server.url}/stcn.pth', force=True)
    assert path.read_bytes() == (server.root / 'stcn.pth').read_bytes() and dl.verify_file(path) is True


# ----------------------------------------------------------------------------------------------
# the interactive networks (s2m, fusion_stcn): the same checks, against their own contracts

INTERACTIVE = [('s2m', S2M_CONTRACT, FUSION_CONTRACT, 'scribble-to-mask model s2m.pth', '--s2m_model'),
               ('fusion_stcn', FUSION_CONTRACT, S2M_CONTRACT, 'fusion model fusion_stcn.pth', '--fusion_model')]


@pytest.mark.parametrize('model, contract, other, label, flag', INTERACTIVE)
def test_interactive_model_downloads_and_is_kept_when_present(server, tmp_path, capsys, model, contract, other, label,
                                                            flag):
    fake_checkpoint(server.root / f'{model}.pth', contract_shapes(contract))
    path = tmp_path / 'saves' / f'{model}.pth'
    assert download_model.main(['--model', model, '--source', f'{server.url}/{model}.pth',
                                '--output', str(path)]) == 0
    assert path.read_bytes() == (server.root / f'{model}.pth').read_bytes() and dl.verify_file(path) is True
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == f'the model is {path}; evaluate with, e.g.: python eval_interactive_davis.py {flag} {path}'
    count = len(server.requests)
    assert download_model.main(['--model', model, '--output', str(path)]) == 0  # present and intact
    assert len(server.requests) == count and 'nothing to download' in capsys.readouterr().out


@pytest.mark.parametrize('model, contract, other, label, flag', INTERACTIVE)
@pytest.mark.parametrize('present, looks', [
    ('stcn', 'it looks like the STCN propagation network stcn.pth'),
    ('resnet', 'it looks like a torchvision ResNet classifier'),
    ('other', 'it looks like the '),
    ('text', 'not a PyTorch checkpoint'),
])
def test_interactive_model_refuses_a_wrong_file_at_the_target(tmp_path, capsys, model, contract, other, label, flag,
                                                             present, looks):
    path = tmp_path / 'saves' / f'{model}.pth'
    if present == 'text':
        path.parent.mkdir(parents=True)
        path.write_text('not a model')
    else:
        shapes = {'stcn': contract_shapes(), 'resnet': resnet18_shapes(), 'other': contract_shapes(other)}[present]
        fake_checkpoint(path, shapes)
    if present == 'other':
        looks += {'s2m': 'difference-aware fusion network fusion_stcn.pth', 'fusion_stcn': 'scribble-to-mask network'
                  ' s2m.pth'}[model]
    before = path.read_bytes()
    assert download_model.main(['--model', model, '--output', str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f'error: {path}: ') and err.count('\n') == 1 and looks in err, err
    assert present == 'text' or f'not the released {label} (' in err
    assert '--force' in err and 'move it away' in err
    assert path.read_bytes() == before and not dl.sidecar_path(path).exists()  # kept, and not trusted


def test_interactive_model_refuses_a_downloaded_file_of_another_network(server, tmp_path, capsys):
    fake_checkpoint(server.root / 'stcn.pth')
    path = tmp_path / 'saves' / 'fusion_stcn.pth'
    url = f'{server.url}/stcn.pth'
    assert download_model.main(['--model', 'fusion_stcn', '--source', url, '--output', str(path)]) == 1
    err = capsys.readouterr().err
    assert (f'error: the file sent by {url}: not the released fusion model fusion_stcn.pth (it looks like the STCN '
            'propagation network stcn.pth' in err and 'check --source' in err)
    assert files_under(tmp_path) == []


@pytest.mark.parametrize('model, gdrive_id, default', [
    ('s2m', '1HKwklVey3P2jmmdmrACFlkXtcvNxbKMM', 'saves/s2m.pth'),
    ('fusion_stcn', '1MAbWHrOjlze9vPQdW-HxMnvjPpaZlfLv', 'saves/fusion_stcn.pth'),
])
def test_interactive_model_offline_says_where_to_put_the_file(monkeypatch, tmp_path, capsys, model, gdrive_id,
                                                              default):
    def offline(file_id, dest, **kwargs):
        raise dl.DownloadError('drive.google.com', 'cannot reach drive.google.com (offline)')
    monkeypatch.setattr(dl, 'fetch_gdrive', offline)
    monkeypatch.chdir(tmp_path)
    assert download_model.main(['--model', model]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f'error: {dl.GDRIVE_URL.format(gdrive_id)}: could not download') and err.count('\n') == 1
    assert f'save it as {default} and rerun' in err
    assert files_under(tmp_path) == []
