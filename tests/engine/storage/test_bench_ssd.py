"""``flexkv-run bench ssd`` (``flexkv_engine.probes.ssd``) on small sizes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from flexkv_engine.cli import main
from flexkv_engine.probes.ssd import SsdBenchError, run_ssd_bench
from flexkv_engine.storage import filesystem_type

from .conftest import BACKENDS

needs_fio = pytest.mark.skipif(shutil.which("fio") is None, reason="fio is not installed")


@needs_fio
@pytest.mark.io_uring
def test_cli_reports_ours_and_fio(disk_dir: Path) -> None:
    args = ["bench", "ssd", "--dir", str(disk_dir), "--size", "32MiB", "--io-size", "1MiB"]
    result = CliRunner().invoke(main, [*args, "--queue-depth", "4", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["backend"] == "io_uring" and report["verified"] is True
    assert (report["size"], report["io_size"], report["queue_depth"]) == (2**25, 2**20, 4)
    for key in ("read_gbps", "write_gbps", "fio_read_gbps", "fio_write_gbps"):
        assert report[key] > 0, key
    assert report["read_ratio_to_fio"] == pytest.approx(
        report["read_gbps"] / report["fio_read_gbps"], rel=0.01
    )
    assert report["write_ratio_to_fio"] > 0
    assert "note" not in report
    assert list(disk_dir.iterdir()) == []  # bench file and its directory removed


@pytest.mark.parametrize("backend", BACKENDS)
def test_without_fio_the_fio_figures_are_null(disk_dir: Path, backend: str) -> None:
    report = run_ssd_bench(
        disk_dir,
        size=8 * 2**20,
        io_size=2**20,
        queue_depth=2,
        backend=backend,
        repeat=2,
        fio="no-such-fio-binary",
    )
    assert report["backend"] == backend
    assert report["read_gbps"] > 0 and report["write_gbps"] > 0
    assert len(report["rounds"]) == 2
    for key in ("fio_read_gbps", "fio_write_gbps", "read_ratio_to_fio", "write_ratio_to_fio"):
        assert report[key] is None, key
    assert "no-such-fio-binary" in report["note"]


def test_memory_filesystems_are_refused() -> None:
    if filesystem_type("/dev/shm") != "tmpfs":
        pytest.skip("no tmpfs at /dev/shm")
    with pytest.raises(SsdBenchError, match="tmpfs"):
        run_ssd_bench("/dev/shm/flexkv-bench-test", size=2**20, io_size=2**20)
    result = CliRunner().invoke(main, ["bench", "ssd", "--dir", "/dev/shm/x", "--json"])
    assert result.exit_code == 2
    assert "tmpfs" in result.stderr and "Traceback" not in result.output


def test_bad_sizes_are_usage_errors(disk_dir: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["bench", "ssd", "--dir", str(disk_dir), "--io-size", "3000"])
    assert result.exit_code == 2 and "multiple of 4096" in result.stderr
    result = runner.invoke(main, ["bench", "ssd", "--dir", str(disk_dir), "--size", "lots"])
    assert result.exit_code == 2 and "--size" in result.stderr
