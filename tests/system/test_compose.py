"""The docker stack's wiring, read from its files since no container engine runs the tests: what each
service names (a host, a port, a database, a volume, a variable) must exist where it points."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import subprocess
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.conftest import REPO

DOCKER = REPO / "docker"
COMPOSE_FILE = DOCKER / "docker-compose.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
ENV_EXAMPLE = DOCKER / ".env.example"
DEMO_SCRIPT = REPO / "scripts" / "run-demo"

#: The Airflow 3 components, each a service of its own, and the command that starts it.
AIRFLOW_COMPONENTS = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
}
#: The services that run task code (the scheduler, under the LocalExecutor, and one-off `dags test`).
TASK_RUNNERS = ("airflow-scheduler", "airflow-cli")
AIRFLOW_SERVICES = (*AIRFLOW_COMPONENTS, "airflow-init", "airflow-cli")
#: The port Airflow's API server listens on unless told otherwise ([api] port).
API_SERVER_PORT = 8080
#: The port PostgreSQL's official image listens on.
POSTGRES_PORT = 5432

#: ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}; $${...} is an escaped dollar.
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment, given as a mapping or as a list of ``KEY=VALUE``."""
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {key: str(value) for key, value in environment.items()}


def _depends_on(service: dict[str, Any]) -> dict[str, str]:
    """Each service awaited and its condition (the list form awaits ``service_started``)."""
    depends_on = service.get("depends_on") or {}
    if isinstance(depends_on, list):
        return dict.fromkeys(depends_on, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in depends_on.items()}


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Each mount target of a service and its source (a named volume, or a path relative to docker/)."""
    mounts = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            mounts[volume["target"]] = volume.get("source", "")
        else:
            source, target = volume.split(":")[:2]
            mounts[target] = source
    return mounts


def _is_bind(source: str) -> bool:
    return source.startswith((".", "/", "~"))


def _published_ports(service: dict[str, Any]) -> list[tuple[str, int, int, str]]:
    """(host address, host port, container port, protocol) of each published port of a service."""
    published = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            host, target, protocol = port.get("host_ip", ""), port["target"], port.get("protocol", "tcp")
            published.append((host, int(port["published"]), int(target), protocol))
            continue
        text, _, protocol = str(port).partition("/")
        parts = text.split(":")
        assert len(parts) >= 2, f"{port}: a port without a host port is published on a random one"
        host = parts[0] if len(parts) == 3 else ""
        published.append((host, int(parts[-2]), int(parts[-1]), protocol or "tcp"))
    return published


def _command(service: dict[str, Any]) -> str:
    command = service.get("command") or ""
    return command if isinstance(command, str) else " ".join(command)


def _substitute(text: str, environment: dict[str, str]) -> str:
    """``${NAME}`` and ``${NAME:-default}`` replaced from an environment, as Marquez does with its config."""

    def value(match: re.Match[str]) -> str:
        name, operator, default = match.groups()
        if environment.get(name, "") != "":
            return environment[name]
        assert operator in (":-", "-"), f"{name} is neither set nor defaulted"
        return default

    return VARIABLE.sub(value, text)


def test_every_service_has_an_image_or_a_build_and_pulled_images_pin_a_version(services):
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        if "build" in service:
            build = service["build"]
            context = (DOCKER / build["context"]).resolve()
            assert (context / build.get("dockerfile", "Dockerfile")).is_file(), name
        else:
            repository, _, tag = service["image"].rpartition(":")
            assert repository and tag not in ("", "latest"), f"{name}: {service['image']} pins no version"


def test_the_airflow_services_share_one_configuration_and_run_the_components_of_airflow_3(compose, services):
    common = compose["x-airflow-common"]
    shared = _environment(common)
    for name in AIRFLOW_SERVICES:
        service = services[name]
        environment = _environment(service)
        assert {key: environment.get(key) for key in shared} == shared, name
        assert (service.get("image"), service.get("build")) == (common.get("image"), common.get("build"))
    for name, command in AIRFLOW_COMPONENTS.items():
        assert _command(services[name]).split()[-1] == command, name

    # the scheduler hands tasks to the API server's execution API
    execution_api = urlsplit(shared["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert execution_api.hostname in AIRFLOW_COMPONENTS
    assert AIRFLOW_COMPONENTS[execution_api.hostname] == "api-server"
    assert (execution_api.port or 80) == API_SERVER_PORT
    assert execution_api.path.rstrip("/") == "/execution"


def test_the_init_service_migrates_the_metadata_database_and_creates_an_admin(services):
    init = services["airflow-init"]
    command = _command(init)
    assert "airflow db migrate" in command
    assert "airflow users create" in command and "--role Admin" in command
    # the credentials are the container's variables ($$ escapes them from compose), each one defined
    environment = _environment(init)
    for name in re.findall(r"\$\$\{([A-Z_]+)\}", command):
        assert name in environment, name
    assert init.get("restart", "no") == "no"  # a one-shot: the others wait for it to complete


def test_the_metadata_url_names_the_postgres_service_and_its_credentials(compose, services):
    import sqlalchemy

    url = sqlalchemy.engine.make_url(
        _environment(compose["x-airflow-common"])["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    )
    database = services[url.host]
    assert database["image"].startswith("postgres:")
    environment = _environment(database)
    assert url.username == environment["POSTGRES_USER"]
    assert url.password == environment["POSTGRES_PASSWORD"]
    assert url.database == environment["POSTGRES_DB"]
    assert (url.port or POSTGRES_PORT) == POSTGRES_PORT
    # the driver is one the constraints install, in the image as here
    assert url.get_dialect().import_dbapi() is not None


def test_the_openlineage_transport_posts_to_the_marquez_api_service(compose, services):
    from openlineage.client.transport import get_default_factory
    from openlineage.client.transport.http import HttpTransport

    config = json.loads(_environment(compose["x-airflow-common"])["AIRFLOW__OPENLINEAGE__TRANSPORT"])
    assert config["type"] == "http"
    assert config["endpoint"] == "api/v1/lineage"
    url = urlsplit(config["url"])
    marquez = services[url.hostname]
    assert marquez["image"].startswith("marquezproject/marquez:")
    assert url.port == int(_environment(marquez)["MARQUEZ_PORT"])
    # the same configuration makes an HTTP transport of the OpenLineage client, as in the provider
    assert isinstance(get_default_factory().create(config), HttpTransport)


def test_marquez_reads_its_database_service_and_listens_where_it_is_reached(services):
    marquez = services["marquez-api"]
    environment = _environment(marquez)
    database = services[environment["POSTGRES_HOST"]]
    assert database["image"].startswith("postgres:")
    database_environment = _environment(database)
    for variable in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"):
        assert environment[variable] == database_environment[variable], variable
    assert int(environment.get("POSTGRES_PORT", POSTGRES_PORT)) == POSTGRES_PORT

    # its configuration file is mounted where MARQUEZ_CONFIG says, and reads those variables
    source = _mounts(marquez)[environment["MARQUEZ_CONFIG"]]
    config = yaml.safe_load(_substitute((DOCKER / source).read_text(encoding="utf-8"), environment))
    assert config["db"]["url"] == (
        f"jdbc:postgresql://{environment['POSTGRES_HOST']}:{POSTGRES_PORT}/{database_environment['POSTGRES_DB']}"
    )
    assert config["db"]["user"] == database_environment["POSTGRES_USER"]
    assert config["db"]["password"] == database_environment["POSTGRES_PASSWORD"]
    api_port = int(config["server"]["applicationConnectors"][0]["port"])
    admin_port = int(config["server"]["adminConnectors"][0]["port"])
    assert api_port == int(environment["MARQUEZ_PORT"])
    assert admin_port == int(environment["MARQUEZ_ADMIN_PORT"])
    assert {target for _, _, target, _ in _published_ports(marquez)} == {api_port, admin_port}
    assert f"/{admin_port}" in " ".join(marquez["healthcheck"]["test"])  # probes the admin connector


def test_marquez_web_reaches_the_marquez_api_and_publishes_its_port(services):
    web = services["marquez-web"]
    environment = _environment(web)
    assert web["image"].startswith("marquezproject/marquez-web:")
    api = services[environment["MARQUEZ_HOST"]]
    assert api["image"].startswith("marquezproject/marquez:")
    assert environment["MARQUEZ_PORT"] == _environment(api)["MARQUEZ_PORT"]
    assert int(environment["WEB_PORT"]) in {target for _, _, target, _ in _published_ports(web)}


def test_every_awaited_service_exists_and_can_report_the_condition_awaited(services):
    for name, service in services.items():
        for target, condition in _depends_on(service).items():
            assert target in services, f"{name} waits for {target}, which is no service"
            awaited = services[target]
            # a service in a profile does not start with `up`: nothing outside it may wait for it
            assert not awaited.get("profiles") or service.get("profiles"), f"{name} -> {target}"
            if condition == "service_healthy":
                test = (awaited.get("healthcheck") or {}).get("test")
                assert test and test != ["NONE"] and not awaited["healthcheck"].get("disable"), target
            elif condition == "service_completed_successfully":
                assert awaited.get("restart", "no") in ("no", "on-failure"), f"{target} never completes"
            else:
                assert condition == "service_started", condition

    database = urlsplit(
        _environment(services["airflow-init"])["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    ).hostname
    for name in AIRFLOW_SERVICES:
        awaited = _depends_on(services[name])
        assert awaited.get(database) == "service_healthy", name
        if name != "airflow-init":
            assert awaited.get("airflow-init") == "service_completed_successfully", name


def test_published_ports_do_not_collide(services):
    seen: dict[tuple[int, str], str] = {}
    for name, service in services.items():
        for host, port, _, protocol in _published_ports(service):
            assert host in ("", "0.0.0.0", "127.0.0.1"), f"{name}: {host}"
            assert (port, protocol) not in seen, (
                f"{name} and {seen.get((port, protocol))} both publish {port}"
            )
            seen[(port, protocol)] = name
    assert (API_SERVER_PORT, "tcp") in seen and seen[(API_SERVER_PORT, "tcp")] == "airflow-apiserver"


def test_every_mounted_volume_exists_and_every_declared_volume_is_used(compose, services):
    declared = set(compose.get("volumes") or {})
    used = set()
    for name, service in services.items():
        for target, source in _mounts(service).items():
            assert PurePosixPath(target).is_absolute(), f"{name}: {target}"
            if _is_bind(source):
                assert (DOCKER / source).exists(), f"{name} mounts {source}, which does not exist"
            else:
                assert source in declared, f"{name} mounts the undeclared volume {source}"
                used.add(source)
    assert used == declared


def test_the_example_dag_finds_its_data_and_keeps_its_output_and_private_mapping_in_volumes(services):
    for name in TASK_RUNNERS:
        service = services[name]
        mounts, environment = _mounts(service), _environment(service)
        sources = {
            target: (DOCKER / source).resolve() for target, source in mounts.items() if _is_bind(source)
        }
        [dags] = [target for target, source in sources.items() if source == REPO / "dags"]
        # the DAG reads the bundled data at <its folder's parent>/data (dags/readmission_training.py)
        assert sources.get(str(PurePosixPath(dags).parent / "data")) == REPO / "data", name

        output = environment["PHI_GUARD_DEMO_OUTPUT"]
        private = str(PurePosixPath(environment["PHI_GUARD_DEMO_SURROGATE_MAPPING"]).parent)
        assert output in mounts and not _is_bind(mounts[output]), name
        assert private in mounts and not _is_bind(mounts[private]), name
        assert mounts[private] != mounts[output], "the surrogate mapping must stay apart from the output"


def test_the_tasks_get_the_keys_the_demo_script_defines_and_only_they(services):
    connections = set(re.findall(r"\b(AIRFLOW_CONN_[A-Z0-9_]+)=", DEMO_SCRIPT.read_text(encoding="utf-8")))
    assert connections, "scripts/run-demo defines no connection"
    for name in TASK_RUNNERS:
        environment = _environment(services[name])
        for connection in connections:
            definition = json.loads(environment[connection])
            # the key is a variable the stack refuses to start without, never a value in the file
            [(_, operator, _)] = VARIABLE.findall(definition["password"])
            assert operator in (":?", "?"), connection
    for name in set(AIRFLOW_SERVICES) - set(TASK_RUNNERS):
        assert not connections & set(_environment(services[name])), f"{name} gets keys it does not use"


def test_every_variable_the_stack_needs_is_in_the_env_example_and_docker_env_is_ignored_by_git():
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    variables = {name: operator for name, operator, _ in VARIABLE.findall(text)}
    example = {
        line.split("=", 1)[0].strip()
        for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    }
    required = {name for name, operator in variables.items() if operator in ("", ":?", "?")}
    assert required <= example, required - example
    assert example <= set(variables), example - set(variables)
    ignored = subprocess.run(["git", "check-ignore", "-q", "docker/.env"], cwd=REPO, check=False)
    assert ignored.returncode == 0, "docker/.env holds the keys: it must be git-ignored"


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    instructions, pending = [], ""
    for line in dockerfile.read_text(encoding="utf-8").splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            keyword, _, arguments = pending.strip().partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
            pending = ""
    return instructions


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether a .dockerignore excludes a path from the build context (the last matching pattern wins)."""
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        if fnmatch.fnmatch(path, pattern.removeprefix("!")):
            excluded = not negated
    return excluded


def test_the_image_is_the_pinned_airflow_with_the_plugin_installed_under_the_constraints(services):
    instructions = _instructions(DOCKERFILE)
    [base] = [arguments for keyword, arguments in instructions if keyword == "FROM"]
    match = re.fullmatch(r"apache/airflow:(?P<airflow>[0-9.]+)-python(?P<python>[0-9]+\.[0-9]+)", base)
    assert match, base
    pins = dict(
        line.split("==", 1) for line in (REPO / "constraints.txt").read_text().splitlines() if "==" in line
    )
    assert match["airflow"] == pins["apache-airflow"]
    from packaging.specifiers import SpecifierSet

    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert match["python"] in SpecifierSet(project["requires-python"])

    # what is copied from the build context (the repository root) and where it lands
    build = services["airflow-init"]["build"]
    assert (DOCKER / build["context"]).resolve() == REPO
    ignore = DOCKERFILE.with_name(DOCKERFILE.name + ".dockerignore")
    patterns = [
        line.strip() for line in ignore.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]
    copied: dict[str, str] = {}
    for keyword, arguments in instructions:
        if keyword == "COPY":
            *sources, destination = [word for word in shlex.split(arguments) if not word.startswith("--")]
            for source in sources:
                assert (REPO / source).exists(), source
                assert not _ignored(source, patterns), f"{source} is left out of the build context"
                copied[source] = destination.rstrip("/")

    [install] = [
        arguments for keyword, arguments in instructions if keyword == "RUN" and "pip install" in arguments
    ]
    words = shlex.split(install)
    constraints = [words[i + 1] for i, word in enumerate(words) if word in ("--constraint", "-c")]
    assert constraints == [f"{copied['constraints.txt']}/constraints.txt"]
    targets = [word for word in words[words.index("install") + 1 :] if not word.startswith("-")]
    targets = [word for word in targets if word not in constraints]
    # the project (its pyproject.toml's folder) with the extras the example DAG needs
    assert targets == [f"{copied['pyproject.toml']}[demo]"]
    assert "demo" in project["optional-dependencies"]
    for needed in ("src", "README.md", "LICENSE"):  # hatchling builds the wheel from these
        assert copied.get(needed, "").startswith(copied["pyproject.toml"]), needed
