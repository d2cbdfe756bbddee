"""The convert job end to end in-process (execution.job_execute, the real child process in its real
sandbox), and the sandbox's walls on their own."""

from __future__ import annotations

import hashlib
import json
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from django.conf import settings

from apps.jobs import execution
from apps.jobs.converting import child, convert, sandbox
from apps.jobs.domain.kinds import ErrorClass, JobKind
from apps.jobs.domain.states import JobState
from apps.jobs.models import Job
from apps.models.models import ModelVersion
from tests.jobs.factories import JobFactory
from tests.models.scans import scan_now, version_at

pytestmark = pytest.mark.django_db

Commits = Callable[..., Any]


def run(job: Job) -> Job:
    execution.job_execute(job_id=job.pk, worker="celery@test", task_id="t1")
    job.refresh_from_db()
    return job


def convert_job(version: ModelVersion, **params: Any) -> Job:
    return JobFactory(kind=JobKind.CONVERT, params={"version": version.pk, **params}, model_version=version)


def logits(folder: Path) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, use_safetensors=None)
    with torch.inference_mode():
        return model.eval()(input_ids=torch.tensor([[5, 17, 99, 3, 250]])).logits


def test_a_pickle_checkpoint_becomes_a_registered_safetensors_version_with_the_same_logits(
    pickled: Path, dispatched: list[Any], django_capture_on_commit_callbacks: Commits
) -> None:
    scan_now()
    source = version_at(pickled)

    with django_capture_on_commit_callbacks(execute=True):
        job = run(convert_job(source, output_name="demo-safe"))

    assert job.state == JobState.SUCCEEDED, job.error
    out = Path(settings.MOC_FINETUNE_OUTPUT_ROOT) / f"demo-safe-converted-job{job.pk}"
    side = sorted(p.name for p in pickled.iterdir() if p.name != "pytorch_model.bin")
    assert "config.json" in side
    assert sorted(p.name for p in out.iterdir()) == sorted([*side, "model.safetensors"])
    torch.testing.assert_close(logits(out), logits(pickled), rtol=0, atol=0)
    made = ModelVersion.objects.get(pk=job.result["output_version"])
    assert (made.model.name, made.path, made.parent) == ("demo-safe", str(out), source)
    assert job.output_version == made
    sha = hashlib.sha256((pickled / "pytorch_model.bin").read_bytes()).hexdigest()
    assert made.lineage["source_sha256"] == sha
    assert (made.lineage["converted_from"], made.lineage["job"]) == (source.pk, job.pk)
    # The tied head is written once, under the embedding's name.
    assert job.result["aliases"] == {"lm_head.weight": "transformer.wte.weight"}
    assert job.result["walls"] == [sandbox.NAMESPACE, sandbox.AUDIT_HOOK]
    assert not any(p.name.startswith(".") for p in out.parent.iterdir()), "the staging folder is left behind"


def test_a_conversion_run_again_after_its_folder_was_renamed_registers_it_without_converting(
    pickled: Path, dispatched: list[Any]
) -> None:
    scan_now()
    first = run(convert_job(version_at(pickled)))
    Job.objects.filter(pk=first.pk).update(state=JobState.QUEUED)  # as a lost worker's job is put back

    again = run(first)

    assert again.state == JobState.SUCCEEDED, again.error
    assert "tensors" not in again.result, "the finished folder was converted a second time"
    assert again.result["output_version"] == first.result["output_version"]
    assert again.output_version_id == first.result["output_version"]
    assert ModelVersion.objects.filter(path=first.result["output"]).count() == 1


def test_a_pickle_that_would_run_code_is_refused_by_the_scan_and_never_opened(
    hostile: tuple[Path, Path], dispatched: list[Any]
) -> None:
    folder, marker = hostile
    scan_now()

    job = run(convert_job(version_at(folder)))

    assert (job.state, job.error_class) == (JobState.FAILED, ErrorClass.CHECK_FAILED)
    assert job.error.startswith("Refused: pytorch_model.bin: dangerous imports")
    assert "system" in job.error
    assert not marker.exists()
    assert not Path(settings.MOC_FINETUNE_OUTPUT_ROOT).exists() or not any(
        Path(settings.MOC_FINETUNE_OUTPUT_ROOT).iterdir()
    )


def test_the_child_refuses_a_hostile_pickle_the_scan_missed_without_running_it(
    hostile: tuple[Path, Path], tmp_path: Path
) -> None:
    folder, marker = hostile
    argv, _ = sandbox.command(
        [sys.executable, "-m", "apps.jobs.converting.child", str(folder), str(tmp_path / "o")],
        without_namespace=True,
    )

    done = subprocess.run(argv, cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=120)

    assert done.returncode == child.REFUSED, done.stderr
    assert "weights-only loader refused it" in done.stdout
    assert "posix.system" in done.stdout
    assert not marker.exists()


def test_a_worker_without_a_network_namespace_refuses_to_convert_naming_the_setting(
    pickled: Path, dispatched: list[Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scan_now()
    source = version_at(pickled)
    monkeypatch.setenv("PATH", str(tmp_path))  # an install without unshare

    job = run(convert_job(source))

    assert (job.state, job.error_class) == (JobState.FAILED, ErrorClass.RUNTIME_MISSING)
    assert "network namespace" in job.error
    assert "MOC_CONVERT_WITHOUT_NAMESPACE=true" in job.error
    assert job.output_version is None
    assert not Path(settings.MOC_FINETUNE_OUTPUT_ROOT).exists() or not any(
        Path(settings.MOC_FINETUNE_OUTPUT_ROOT).iterdir()
    )


def test_the_operator_may_let_a_conversion_run_behind_the_audit_hook_alone(
    pickled: Path, dispatched: list[Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    scan_now()
    source = version_at(pickled)
    monkeypatch.setenv("PATH", str(tmp_path))
    settings.MOC_CONVERT_WITHOUT_NAMESPACE = True

    job = run(convert_job(source))

    assert job.state == JobState.SUCCEEDED, job.error
    assert job.result["walls"] == [sandbox.AUDIT_HOOK]
    assert job.events.filter(message__contains="behind the audit hook alone").exists()


def test_each_attempt_stages_into_its_own_folder_and_a_success_removes_the_earlier_ones(
    pickled: Path, dispatched: list[Any]
) -> None:
    scan_now()
    job = convert_job(version_at(pickled))
    out_root = Path(settings.MOC_FINETUNE_OUTPUT_ROOT)
    final = out_root / f"demo-pt-converted-job{job.pk}"
    earlier = final.with_name(f".{final.name}.partial-t0")  # a worker that died mid-conversion
    other_job = out_root / f".demo-pt-converted-job{job.pk + 1}.partial-t9"
    for folder in (earlier, other_job):
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(b"half")

    job = run(job)  # task t1

    assert job.state == JobState.SUCCEEDED, job.error
    assert sorted(p.name for p in out_root.iterdir()) == sorted([final.name, other_job.name])
    assert job.result["output"] == str(final)


def test_an_index_that_names_a_shard_outside_the_folder_is_refused_naming_it(
    pickled: Path, dispatched: list[Any], tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere.bin"
    (pickled / "pytorch_model.bin").rename(outside)
    for name in (str(outside), "../elsewhere.bin"):
        (pickled / child.INDEX).write_text(json.dumps({"weight_map": {"transformer.wte.weight": name}}))
        with pytest.raises(ValueError, match="not a plain file name"):
            child.pickle_inputs(pickled)
    scan_now()

    job = run(convert_job(version_at(pickled)))

    assert (job.state, job.error_class) == (JobState.FAILED, ErrorClass.CHECK_FAILED)
    assert "'../elsewhere.bin'" in job.error


def test_side_files_that_are_symbolic_links_are_skipped(pickled: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("the worker's eyes only")
    (pickled / "notes.txt").symlink_to(secret)

    said = child.convert(pickled, tmp_path / "out")

    assert "notes.txt" in said["skipped"]
    assert "notes.txt" not in said["copied"]
    assert not (tmp_path / "out" / "notes.txt").exists()
    assert "config.json" in said["copied"]


def test_a_child_out_of_memory_fails_the_job_as_out_of_memory() -> None:
    said = child.failure(MemoryError())

    assert said == {"ok": False, "refused": False, "error": "MemoryError", "error_class": "out_of_memory"}
    assert convert.failed(said, child.FAILED, "")["error_class"] == ErrorClass.OUT_OF_MEMORY
    cpu = child.failure(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried 9 GB"))
    assert cpu["error_class"] == ErrorClass.OUT_OF_MEMORY
    assert child.failure(ValueError("no"))["error_class"] == ErrorClass.RUNNER_ERROR
    # Killed by the kernel (nothing said): out of memory, the likely cause; any other death is not.
    killed = convert.failed({}, -signal.SIGKILL, "")
    assert killed["error_class"] == ErrorClass.OUT_OF_MEMORY
    assert "SIGKILL" in killed["error"]
    crashed = convert.failed({}, 1, "Traceback (most recent call last):\nKeyError: 'x'")
    assert crashed == {
        "ok": False,
        "error": "the conversion process failed: KeyError: 'x'",
        "error_class": ErrorClass.RUNNER_ERROR,
    }


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP server on 127.0.0.1 that accepts connections; its port."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                server.accept()[0].close()
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


CONNECT = """
import socket, sys
{seal}
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=5).close()
except Exception as exc:
    print(type(exc).__name__, exc)
    sys.exit(3)
print("connected")
"""


def connect(port: int, *, sandboxed: bool, sealed: bool) -> subprocess.CompletedProcess[str]:
    seal = "from apps.jobs.converting.sandbox import seal; seal()" if sealed else ""
    argv = [sys.executable, "-c", CONNECT.format(seal=seal, port=port)]
    if sandboxed:
        argv, _ = sandbox.command(argv)
    return subprocess.run(argv, cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=60)


def test_a_plain_child_reaches_the_listener(listener: int) -> None:
    done = connect(listener, sandboxed=False, sealed=False)

    assert (done.returncode, done.stdout.strip()) == (0, "connected")


def test_a_child_in_the_network_namespace_cannot_reach_127_0_0_1(listener: int) -> None:
    if sandbox.namespace_prefix() is None:
        pytest.skip("this machine cannot make a network namespace (no CAP_SYS_ADMIN, no user namespaces)")

    done = connect(listener, sandboxed=True, sealed=False)

    assert done.returncode == 3, done.stdout
    assert "unreachable" in done.stdout.lower()


def test_a_sealed_child_cannot_make_a_socket_even_without_the_namespace(listener: int) -> None:
    done = connect(listener, sandboxed=False, sealed=True)

    assert done.returncode == 3, done.stdout
    assert "Sealed refused in the conversion sandbox: socket" in done.stdout
