"""hearth.toml [cluster]: parsing and its errors (pure; no Ray)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hearth.cluster.config import Autoscale, ClusterConfig, ModelDeployment
from hearth.cluster.serve import cluster_config, deployment_name
from hearth.config import Settings
from hearth.errors import ConfigError


def test_replicas_autoscale_and_cpus_are_read() -> None:
    table = {
        "registry": "10.0.0.5:8000",
        "http": "0.0.0.0:8000",
        "models": {
            "gemma3:270m": {"replicas": 2, "num_cpus": 1},
            "tiny": {"autoscale": {"min": 1, "max": 4, "target_ongoing_requests": 2}},
        },
    }

    config = ClusterConfig.from_table(table)

    assert config.registry == "10.0.0.5:8000"
    assert config.http == "0.0.0.0:8000"
    assert config.deployment("gemma3:270m") == ModelDeployment("gemma3:270m", replicas=2)
    tiny = config.deployment("tiny")
    assert tiny is not None and tiny.autoscale == Autoscale(1, 4, 2.0)
    assert ModelDeployment("m", num_cpus=1.5).threads == 2


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({}, "list the models to serve"),
        ({"models": {"m": {"replica": 2}}}, "unknown key replica"),
        ({"models": {"m": {"replicas": 0}}}, "replicas must be an integer of at least 1"),
        ({"models": {"m": {"replicas": 2, "autoscale": {}}}}, "either replicas or autoscale"),
        ({"models": {"m": {"autoscale": {"min": 3, "max": 2}}}}, "max (2) is below min (3)"),
        ({"models": {"m": {"num_cpus": 0}}}, "num_cpus must be a number above 0"),
        ({"models": {"m": "two"}}, "must be a table"),
        ({"models": {"Bad Name!": {}}}, 'models."Bad Name!"'),
        ({"http": "http://x:8000", "models": {"m": {}}}, "host:port (no scheme)"),
        ({"nodes": 3, "models": {"m": {}}}, "unknown key nodes"),
    ],
)
def test_mistakes_name_the_key(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        ClusterConfig.from_table(table)
    assert message in str(error.value)


def test_hearth_toml_cluster_table_reaches_the_config(tmp_path: Path) -> None:
    (tmp_path / "hearth.toml").write_text('[cluster.models."gemma3:270m"]\nreplicas = 3\n')

    config = cluster_config(Settings.from_env({"HEARTH_HOME": str(tmp_path)}))

    assert config.models == (ModelDeployment("gemma3:270m", replicas=3),)
    assert deployment_name("gemma3:270m") == "model-gemma3-270m"


def test_no_cluster_table_says_what_to_add(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no \[cluster\] table"):
        cluster_config(Settings.from_env({"HEARTH_HOME": str(tmp_path)}))
