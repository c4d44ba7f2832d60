"""Fine-tuning jobs over HTTP: ``POST /api/finetune``, ``GET``/``DELETE /api/finetune/{id}``.

A job trains in its own worker process (never in the server: training would take the cores
the engine decodes on, and the GIL). The data path is a path on the server's machine. Checks
that need no model (bad options, name taken, bad data lines, a base that cannot be trained)
answer 400 at once; the job's status, loss points, log and evaluation are read from its folder.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from hearth.config import Settings
from hearth.errors import FinetuneError, HearthError, JobNotFoundError, ValidationError
from hearth.finetune.jobs import JobStore
from hearth.finetune.options import ALL_LINEAR, JobSpec, TrainOptions
from hearth.finetune.pipeline import preflight
from hearth.server.auth import require_admin
from hearth.server.errors import openai_error, response_for
from hearth.store import Store

router = APIRouter(prefix="/api/finetune")


class FinetuneRequest(BaseModel):
    base: str = Field(min_length=1, max_length=300)
    data: str = Field(min_length=1, max_length=4096)
    name: str = Field(min_length=1, max_length=300)
    eval_data: str | None = Field(default=None, max_length=4096)
    force: bool = False
    merge: bool = False
    quantize: str | None = Field(default=None, max_length=32)
    method: str = "lora"
    rank: int = 16
    alpha: float | None = None
    dropout: float = 0.05
    targets: list[str] = Field(default_factory=lambda: [ALL_LINEAR], max_length=64)
    epochs: int = 3
    max_steps: int = 0
    lr: float = 2e-4
    batch_size: int = 4
    grad_accum: int = 1
    max_seq_len: int = 1024
    eval_split: float = 0.1
    checkpoint_every: int = 50
    seed: int = 0
    dtype: str = "auto"
    gradient_checkpointing: bool = False
    rslora: bool = False

    def spec(self) -> JobSpec:
        fields = self.model_dump(exclude={"base", "data", "name", "eval_data", "force"})
        options = TrainOptions.from_dict(fields)  # it takes only its own fields
        return JobSpec(
            self.base,
            self.data,
            self.name,
            options,
            self.eval_data,
            self.force,
            merge=self.merge,
            quantize=self.quantize,
        )


def _jobs(request: Request) -> JobStore:
    settings: Settings = request.app.state.settings
    return JobStore(settings)


def _error(error: HearthError) -> JSONResponse:
    if isinstance(error, JobNotFoundError):
        return openai_error(404, str(error), type_="invalid_request_error", code="job_not_found")
    if isinstance(error, FinetuneError | ValidationError):
        param = error.param if isinstance(error, ValidationError) else None
        return openai_error(400, str(error), type_="invalid_request_error", param=param)
    return response_for(error)


@router.post("")
async def create_job(body: FinetuneRequest, request: Request) -> JSONResponse:
    jobs = _jobs(request)
    try:
        require_admin(request, "starting a fine-tune")
        spec = body.spec()
        await run_in_threadpool(preflight, Store(jobs.settings), spec)
        job_id = jobs.create(spec)
        jobs.spawn(job_id)
    except HearthError as error:
        return _error(error)
    return JSONResponse(_view(jobs, job_id), status_code=201)


@router.get("/{job_id}")
async def get_job(job_id: str, request: Request) -> JSONResponse:
    try:
        return JSONResponse(_view(_jobs(request), job_id))
    except HearthError as error:
        return _error(error)


@router.delete("/{job_id}")
async def cancel_job(job_id: str, request: Request) -> JSONResponse:
    jobs = _jobs(request)
    try:
        jobs.cancel(job_id)
        return JSONResponse(_view(jobs, job_id))
    except HearthError as error:
        return _error(error)


def _view(jobs: JobStore, job_id: str) -> dict[str, Any]:
    return {
        **jobs.status(job_id).to_dict(),
        "loss_points": jobs.losses(job_id),
        "log": jobs.log_tail(job_id),
        "evaluation": jobs.evaluation(job_id),
    }
