"""The convert runner: a version's pickle checkpoint made into a safetensors version of its own.

1. The pickle files are scanned first (apps.models.formats.pickles, the registry's own scan): one
   that names a dangerous import is refused here, before any process opens it.
2. The conversion runs in a child process (apps.jobs.converting.child) in the sandbox (its own
   network namespace, an audit hook against programs, sockets and ctypes, a bare environment; it
   dies with the worker), which reads the pickle with the weights-only loader only: a pickle the
   scan missed that would import code is refused there, never run. A worker that cannot make the
   namespace refuses the job (runtime_missing) unless MOC_CONVERT_WITHOUT_NAMESPACE is true.
3. The child writes into a staging folder of its attempt's own (`.<name>.partial-<task id>`, a
   dot-name, which scans skip) in MOC_FINETUNE_OUTPUT_ROOT; renamed to <name>-converted-job<id> once
   complete, it is registered as the next version of the output model, with lineage (source version,
   job, the input's sha256), and recorded as the job's output version. Its checksums and validation
   follow by themselves (the registry queues them).

A second run of the same job (a retry after a lost worker) finds the renamed folder and registers
it again, which the registry answers with the version already there; the staging folders earlier
attempts left behind are removed then.
"""

from __future__ import annotations

import glob
import json
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone
from django.utils.text import slugify

from apps.jobs import services
from apps.jobs.converting import child, sandbox
from apps.jobs.domain import params as job_params
from apps.jobs.domain.failures import classify
from apps.jobs.domain.kinds import ErrorClass, JobKind, LogLevel
from apps.jobs.domain.params import ConvertParams
from apps.jobs.models import Job
from apps.jobs.reporting import Outcome, Report
from apps.models.formats import pickles
from apps.models.models import ModelVersion
from apps.models.scanning.register import version_register

# How often the runner looks at the child and at whether the job was cancelled.
POLL_S = 0.25
REFUSED = "Refused: "
CHILD = "apps.jobs.converting.child"
WITHOUT_NAMESPACE = "MOC_CONVERT_WITHOUT_NAMESPACE"


def run(job: Job, report: Report) -> Outcome:
    params: ConvertParams = job_params.from_stored(JobKind.CONVERT, job.params)
    version = ModelVersion.objects.select_related("model").get(pk=params.version)
    source = Path(version.path)
    model_name = params.output_name or version.model.name
    final = (
        Path(settings.MOC_FINETUNE_OUTPUT_ROOT) / f"{slugify(model_name) or 'model'}-converted-job{job.pk}"
    )
    result: dict[str, Any] = {"source_version": version.pk, "source": str(source), "output": str(final)}
    if not final.is_dir():
        staging = final.with_name(f".{final.name}.partial-{slugify(report.task_id) or 'task'}")
        try:
            argv, walls = sandbox.command(
                [sys.executable, "-m", CHILD, str(source), str(staging)],
                without_namespace=settings.MOC_CONVERT_WITHOUT_NAMESPACE,
            )
        except sandbox.NoNamespace as exc:
            why = (
                f"{exc}: a conversion runs without a network or not at all; "
                f"set {WITHOUT_NAMESPACE}=true to let it run behind the audit hook alone"
            )
            report.log(why, level=LogLevel.ERROR)
            return Outcome(result, ErrorClass.RUNTIME_MISSING, why)
        if sandbox.NAMESPACE not in walls:
            report.log(
                f"No network namespace on this worker: behind the audit hook alone ({WITHOUT_NAMESPACE})",
                level=LogLevel.WARNING,
            )
        report.progress(0.05, "Scanning the pickle")
        try:
            inputs = child.pickle_inputs(source)
        except (child.Unusable, OSError, ValueError, KeyError) as exc:
            return Outcome(result, ErrorClass.CHECK_FAILED, f"{source}: {exc}")
        if refusal := _scan_refusal(inputs):
            report.log(refusal, level=LogLevel.ERROR)
            return Outcome(result, ErrorClass.CHECK_FAILED, REFUSED + refusal)
        made = _convert_in_child(argv, walls, staging, final, report)
        result.update(made)
        if not made["ok"]:
            level = ErrorClass.CHECK_FAILED if made.get("refused") else made["error_class"]
            prefix = REFUSED if made.get("refused") else ""
            return Outcome(result, level, prefix + made["error"])
        report.settle()  # the output is in place: a stop from now on would leave it unregistered
        report.log(
            f"Wrote {len(made['files'])} safetensors file(s), {made['tensors']} tensors, into {final.name}",
            data={k: made[k] for k in ("files", "aliases", "copied", "skipped", "walls")},
        )
    report.settle()
    _drop_stale_staging(final)
    report.progress(0.9, "Registering the safetensors version")
    lineage = {
        "made_by": "convert",
        "job": job.pk,
        "converted_from": version.pk,
        "source": str(source),
        "source_sha256": result.get("sha256", ""),
        "at": timezone.now().isoformat(),
    }
    registered = version_register(
        path=str(final), model_name=model_name, parent=version, lineage=lineage, created_by=job.created_by
    )
    services.job_output_set(job_id=job.pk, task_id=report.task_id, version_id=registered.pk)
    report.progress(1.0, f"Registered {registered}")
    return Outcome({**result, "output_version": registered.pk, "output_label": str(registered)})


def _scan_refusal(inputs: list[Path]) -> str:
    """Why the registry's pickle scan refuses one of `inputs` ('' when none is refused)."""
    for path in inputs:
        for check in pickles.read(path).checks:
            if check.status == "fail":
                return f"{path.name}: {check.detail}"
    return ""


def _convert_in_child(
    argv: list[str], walls: list[str], staging: Path, final: Path, report: Report
) -> dict[str, Any]:
    """Run the child (`argv`, made by sandbox.command) into `staging` and rename that to `final` once
    it succeeded; what the child said, with the sandbox's walls ("ok" False and "error_class" when it
    failed)."""
    shutil.rmtree(staging, ignore_errors=True)  # this attempt's, from a delivery that stopped halfway
    final.parent.mkdir(parents=True, exist_ok=True)
    report.progress(0.1, f"Converting in a child process ({' + '.join(walls)})")
    started = time.monotonic()
    process = sandbox.start(argv, home=staging, cwd=settings.BASE_DIR)
    try:
        while process.poll() is None:
            if stop := report.stop_asked():  # cancel, shutdown or the time limit: the child goes
                process.kill()
                process.wait()
                shutil.rmtree(staging, ignore_errors=True)
                report.stop_now(stop)
            time.sleep(POLL_S)
        out, err = process.communicate()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    said = _last_json(out)
    said["walls"] = walls
    said["child_s"] = round(time.monotonic() - started, 3)
    if process.returncode != child.OK or not said.get("ok"):
        shutil.rmtree(staging, ignore_errors=True)
        return {**said, **failed(said, process.returncode, err)}
    try:
        staging.rename(final)
    except OSError:
        if not final.is_dir():
            raise
        shutil.rmtree(staging, ignore_errors=True)  # another attempt of this job renamed its folder first
    return said


def failed(said: dict[str, Any], returncode: int, stderr: str) -> dict[str, Any]:
    """The failure of a child that ended with `returncode`, having said `said` ({} when it said
    nothing): "ok" False, "error" and "error_class" (the child's own class when it gave one)."""
    error, error_class = said.get("error"), said.get("error_class")
    if returncode == -signal.SIGKILL and not error:
        # Not the runner's kill (a stop leaves through stop_now above): the kernel's out-of-memory
        # killer is what kills a process that holds a whole pickle, short of an operator.
        error = (
            "the conversion process was killed (SIGKILL), most likely by the kernel's out-of-memory killer"
        )
        error_class = ErrorClass.OUT_OF_MEMORY.value
    if not error:
        tail = stderr.strip().splitlines()[-1:] or [f"it ended with status {returncode}"]
        error = f"the conversion process failed: {tail[0]}"[:2000]
    if error_class not in set(ErrorClass):
        error_class = classify(RuntimeError(error)).value
    return {"ok": False, "error": error, "error_class": error_class}


def _drop_stale_staging(final: Path) -> None:
    """Remove the staging folders of this job's earlier attempts (a worker that died mid-conversion
    took its child with it but left the folder): the output is in place, none of them is wanted."""
    for stale in final.parent.glob(f".{glob.escape(final.name)}.partial-*"):
        shutil.rmtree(stale, ignore_errors=True)


def _last_json(out: str) -> dict[str, Any]:
    """The child's last line of output, the JSON object it ends with ({} when it has none)."""
    for line in reversed(out.strip().splitlines()):
        try:
            said = json.loads(line)
        except ValueError:
            continue
        if isinstance(said, dict):
            return said
    return {}
