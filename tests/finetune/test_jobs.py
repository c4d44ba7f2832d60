"""A whole fine-tune as a job: registered with its adapter and lineage, served by name; the
refusals (non-causal base, taken name, bad options and data) and the HTTP API."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from hearth.config import Settings
from hearth.engine.manager import ModelManager
from hearth.engine.sampling import SamplingParams
from hearth.errors import FinetuneError, ValidationError
from hearth.finetune.jobs import JobStore
from hearth.finetune.options import JobSpec, TrainOptions
from hearth.finetune.pipeline import preflight
from hearth.server.app import create_app
from hearth.store import LocalModel, MediaType, Store
from tests.finetune.conftest import tiny_facts, write_jsonl

OPTIONS = TrainOptions(
    rank=4, lr=1e-2, batch_size=4, max_steps=12, dropout=0.0, dtype="fp32", eval_split=0.25
)


def _answer(manager: ModelManager, name: str, prompt: str) -> str:
    with manager.acquire(name) as llm:
        return llm.complete(prompt, SamplingParams(temperature=0, max_tokens=8)).text()


def test_a_job_trains_registers_and_the_model_is_served_by_name(
    settings: Settings, tiny_store: tuple[Store, LocalModel], tmp_path: Path
) -> None:
    store, base = tiny_store
    data = write_jsonl(tmp_path / "facts.jsonl", tiny_facts(8))
    jobs = JobStore(settings)
    job_id = jobs.create(JobSpec("tiny", str(data), "tiny-ft", OPTIONS))
    status = jobs.run(job_id)
    assert status.status == "succeeded", status.message
    assert status.step == 12 and len(jobs.losses(job_id)) == 12
    tuned = store.resolve("tiny-ft")
    kinds = [layer.media_type for layer in tuned.manifest.layers]
    assert kinds.count(MediaType.MODEL) == 1 and MediaType.ADAPTER in kinds
    assert tuned.model_path == base.model_path  # the base's blob, not a copy
    lineage = json.loads(store.read_layer(tuned, MediaType.LINEAGE) or b"{}")
    assert lineage["base"]["model_digest"].endswith(base.model_path.name[7:])
    assert lineage["base"]["license_id"] == "apache-2.0"
    assert lineage["dataset"]["digest"].startswith("sha256:")
    assert lineage["hyperparameters"]["rank"] == 4
    assert lineage["libraries"]["peft"] == "0.21.2"
    evaluation = jobs.evaluation(job_id)
    assert evaluation and evaluation["improved"]
    assert lineage["evaluation"]["loss_after"] == evaluation["loss_after"]
    with ModelManager(store, settings) as manager:
        assert _answer(manager, "tiny-ft", "Q1: ") != _answer(manager, "tiny", "Q1: ")


def test_refusals_before_any_training(
    settings: Settings, tiny_store: tuple[Store, LocalModel], tmp_path: Path, tiny_bert_dir: Path
) -> None:
    store, _ = tiny_store
    data = write_jsonl(tmp_path / "d.jsonl", tiny_facts(4))
    store.import_hf_dir(tiny_bert_dir, "minilm")
    with pytest.raises(FinetuneError, match="not a causal language model"):
        preflight(store, JobSpec("minilm", str(data), "x"))
    with pytest.raises(FinetuneError, match=r"exists already.*--force"):
        preflight(store, JobSpec("tiny", str(data), "tiny"))
    preflight(store, JobSpec("tiny", str(data), "tiny", force=True))
    with pytest.raises(ValidationError, match="rank"):
        TrainOptions(rank=0)
    with pytest.raises(ValidationError, match="rank"):
        TrainOptions(rank=4096)
    with pytest.raises(ValidationError, match="lr"):
        TrainOptions(lr=0)
    with pytest.raises(ValidationError, match="lr"):
        TrainOptions(lr=3.0)


def test_the_http_api_refuses_bad_jobs_and_runs_good_ones(
    settings: Settings, tiny_store: tuple[Store, LocalModel], tmp_path: Path
) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", tiny_facts(8))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a"}\n{oops\n')
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        body = {"base": "tiny", "data": str(data), "name": "api-ft"}
        assert client.post("/api/finetune", json={**body, "rank": 0}).status_code == 400
        refused = client.post("/api/finetune", json={**body, "data": str(bad)})
        assert refused.status_code == 400
        assert "line 1" in refused.text and "line 2" in refused.text
        assert client.get("/api/finetune/nope").status_code == 404
        options = OPTIONS.to_dict()
        started = client.post("/api/finetune", json={**body, **options})
        assert started.status_code == 201, started.text
        job_id = started.json()["id"]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            view = client.get(f"/api/finetune/{job_id}").json()
            if view["status"] not in ("queued", "running"):
                break
            time.sleep(0.5)
        assert view["status"] == "succeeded", view
        assert len(view["loss_points"]) == 12 and view["evaluation"]["improved"]
        assert client.delete(f"/api/finetune/{job_id}").json()["status"] == "succeeded"


def test_chat_data_on_a_base_without_template_stores_the_template_it_trained_with(
    settings: Settings, tiny_store: tuple[Store, LocalModel], tmp_path: Path
) -> None:
    from hearth.finetune.data import FALLBACK_CHAT_TEMPLATE

    store, _ = tiny_store
    chats = [
        {"messages": [{"role": "user", "content": f"n{i}"}, {"role": "assistant", "content": "ok"}]}
        for i in range(4)
    ]
    data = write_jsonl(tmp_path / "chat.jsonl", chats)
    options = TrainOptions(rank=2, max_steps=2, dtype="fp32", eval_split=0.25)
    jobs = JobStore(settings)
    status = jobs.run(jobs.create(JobSpec("tiny", str(data), "chat-ft", options, force=True)))
    assert status.status == "succeeded", status.message
    tuned = store.resolve("chat-ft")
    assert store.read_layer(tuned, MediaType.TEMPLATE) == FALLBACK_CHAT_TEMPLATE.encode()
    lineage = json.loads(store.read_layer(tuned, MediaType.LINEAGE) or b"{}")
    assert lineage["forced"] is True


def test_only_an_admin_key_starts_a_fine_tune(settings: Settings, tmp_path: Path) -> None:
    from hearth.db import open_database
    from hearth.server.keys import KeyStore

    keys = KeyStore(open_database(settings))
    user = keys.create("user", models=None, expires=None).secret
    admin = keys.create("root", models=None, expires=None, admin=True).secret
    body = {"base": "tiny", "data": str(tmp_path / "none.jsonl"), "name": "x", "rank": 0}
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        as_user = client.post("/api/finetune", json=body, headers=_bearer(user))
        assert as_user.status_code == 403 and "admin key" in as_user.text
        as_admin = client.post("/api/finetune", json=body, headers=_bearer(admin))
        assert as_admin.status_code == 400  # past the key check: the bad rank is refused


def _bearer(secret: str) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"}
