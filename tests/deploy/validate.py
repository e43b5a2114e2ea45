#!/usr/bin/env python3
"""Offline validation of everything under deploy/.

1. Renders every kustomization under deploy/ the way `kubectl kustomize` does
   for the subset of kustomize that the project uses (resources, images,
   strategic-merge patches by path); anything else in a kustomization is an
   error here, so this renderer cannot silently drift from kustomize.
2. Validates every document, rendered or not, against a schema, without the
   network:
   - standard kinds against the Kubernetes OpenAPI schemas bundled in the
     `kubernetes-validate` package, in strict mode (unknown fields fail), for
     each Kubernetes version given with --k8s-version;
   - KubeDiag kinds (Operation, OperationSet, Diagnosis) against the JSON
     schemas in tests/deploy/schemas/.
3. Checks what the collector needs from its DaemonSet and its Operation
   (host network, runtime socket mounts, probes, ports that agree, ...).

Exit status 0 when everything passes. The last line is
"manifests: N passed, M failed".

    python3 tests/deploy/validate.py [--deploy DIR] [--k8s-version 1.29.0 ...]
                                     [--dump-json FILE]
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
import tomllib
from pathlib import Path
from typing import Any, Callable

import jsonschema
import kubernetes_validate
import referencing
import referencing.jsonschema
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SCHEMAS = HERE / "schemas"

DEFAULT_K8S_VERSIONS = ["1.29.0", "1.33.0"]
KUBEDIAG_GROUP = "diagnosis.kubediag.org/v1"
KUBEDIAG_SCHEMAS = {
    "Operation": "operation.json",
    "OperationSet": "operationset.json",
    "Diagnosis": "diagnosis.json",
}
PROCESSOR_PATH = "/processor/podDetailCollector"
# Every processor the binary serves has its Operation.
PROCESSOR_PATHS = (
    PROCESSOR_PATH,
    "/processor/podListCollector",
    "/processor/containerCollector",
    "/processor/runtimeInfoCollector",
    "/processor/dockerInfoCollector",
)
OPERATION_TIMEOUT = 60
# What the Operations carry until the operator puts the Secret's token in (README, "Access").
TOKEN_PLACEHOLDER = "REPLACE_WITH_THE_TOKEN"
KUSTOMIZATION_KEYS = {"apiVersion", "kind", "resources", "images", "patches"}
CLUSTER_SCOPED = {"Namespace", "Operation", "OperationSet", "ClusterRole", "ClusterRoleBinding"}
# resource.Quantity as the API server parses it (the OpenAPI schema does not say).
QUANTITY = re.compile(r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(([KMGTPE]i)|[numkMGTPE]|[eE][+-]?[0-9]+)?$")
RBAC_KINDS = {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}


class Report:
    def __init__(self, verbose: bool) -> None:
        self.verbose = verbose
        self.passed = 0
        self.failed = 0

    def check(self, ok: bool, what: str, detail: str = "") -> bool:
        if ok:
            self.passed += 1
            if self.verbose:
                print(f"ok    {what}")
        else:
            self.failed += 1
            print(f"FAIL  {what}" + (f": {detail}" if detail else ""))
        return ok

    def run(self, what: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - every failure is reported, none aborts
            self.check(False, what, f"{type(e).__name__}: {getattr(e, 'message', e)}")
        else:
            self.check(True, what)


# ---------------------------------------------------------------- loading


def load_docs(path: Path) -> list[dict]:
    with path.open() as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    for d in docs:
        if not isinstance(d, dict):
            raise ValueError(f"{path}: a document is not a mapping")
    return docs


def doc_id(doc: dict) -> str:
    meta = doc.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{doc.get('kind')}/{(ns + '/') if ns else ''}{meta.get('name')}"


# ---------------------------------------------------------------- kustomize subset


def strategic_merge(base: Any, patch: Any) -> Any:
    """Strategic merge as kustomize does it for the fields used here: maps merge
    key by key, lists of maps with a `name` merge by name, other lists replace."""
    if isinstance(base, dict) and isinstance(patch, dict):
        if any(k.startswith("$") for k in patch):
            raise ValueError(f"patch directives are not supported here: {sorted(patch)}")
        out = dict(base)
        for k, v in patch.items():
            out[k] = strategic_merge(base[k], v) if k in base else copy.deepcopy(v)
        return out
    if (
        isinstance(base, list)
        and isinstance(patch, list)
        and all(isinstance(i, dict) and "name" in i for i in base + patch)
    ):
        out = [copy.deepcopy(i) for i in base]
        index = {i["name"]: n for n, i in enumerate(out)}
        for item in patch:
            if item["name"] in index:
                n = index[item["name"]]
                out[n] = strategic_merge(out[n], item)
            else:
                out.append(copy.deepcopy(item))
        return out
    return copy.deepcopy(patch)


def pod_spec(doc: dict) -> dict | None:
    if doc.get("kind") == "Pod":
        return doc.get("spec")
    return ((doc.get("spec") or {}).get("template") or {}).get("spec")


def set_images(docs: list[dict], images: list[dict]) -> None:
    for rule in images:
        for doc in docs:
            spec = pod_spec(doc)
            if not spec:
                continue
            for c in spec.get("containers", []) + spec.get("initContainers", []):
                image = c.get("image", "")
                name = image.split("@", 1)[0]
                if ":" in name.rsplit("/", 1)[-1]:
                    name = name.rsplit(":", 1)[0]
                if name != rule["name"]:
                    continue
                new = rule.get("newName", name)
                if "digest" in rule:
                    c["image"] = f"{new}@{rule['digest']}"
                elif "newTag" in rule:
                    c["image"] = f"{new}:{rule['newTag']}"
                else:
                    c["image"] = new + image[len(name):]


def render(directory: Path, used: set[Path], patches: set[Path]) -> list[dict]:
    kfile = directory / "kustomization.yaml"
    (k,) = load_docs(kfile)
    used.add(kfile.resolve())
    unknown = set(k) - KUSTOMIZATION_KEYS
    if unknown:
        raise ValueError(f"{kfile}: keys this renderer does not implement: {sorted(unknown)}")
    if k.get("kind") != "Kustomization":
        raise ValueError(f"{kfile}: kind is not Kustomization")
    docs: list[dict] = []
    for res in k.get("resources", []):
        p = (directory / res).resolve()
        if p.is_dir():
            docs.extend(render(p, used, patches))
        elif p.is_file():
            used.add(p)
            docs.extend(load_docs(p))
        else:
            raise FileNotFoundError(f"{kfile}: resource {res} does not exist")
    for patch in k.get("patches", []):
        if set(patch) != {"path"}:
            raise ValueError(f"{kfile}: only `patches: - path: FILE` is implemented here")
        p = (directory / patch["path"]).resolve()
        used.add(p)
        patches.add(p)
        for pd in load_docs(p):
            targets = [d for d in docs if doc_id(d) == doc_id(pd) and d.get("apiVersion") == pd.get("apiVersion")]
            if len(targets) != 1:
                raise ValueError(f"{p}: patch target {doc_id(pd)} matches {len(targets)} resources")
            docs[docs.index(targets[0])] = strategic_merge(targets[0], pd)
    set_images(docs, k.get("images", []))
    ids = [doc_id(d) for d in docs]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ValueError(f"{kfile}: resources defined twice: {dupes}")
    return docs


# ---------------------------------------------------------------- schemas


def kubediag_registry() -> referencing.Registry:
    resources = []
    for f in sorted(SCHEMAS.glob("*.json")):
        contents = json.loads(f.read_text())
        jsonschema.Draft202012Validator.check_schema(contents)
        resources.append((contents["$id"], referencing.Resource.from_contents(contents)))
    # No `retrieve`: a $ref outside these files fails instead of going online.
    return referencing.Registry().with_resources(resources)


def validate_doc(doc: dict, versions: list[str], registry: referencing.Registry) -> None:
    kind, api = doc.get("kind"), doc.get("apiVersion")
    if api == KUBEDIAG_GROUP:
        if kind not in KUBEDIAG_SCHEMAS:
            raise ValueError(f"no schema kept for KubeDiag kind {kind}")
        schema = registry.contents(schema_id(KUBEDIAG_SCHEMAS[kind]))
        validator = jsonschema.Draft202012Validator(schema, registry=registry)
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
        if errors:
            raise ValueError("; ".join(describe(e) for e in errors))
        return
    for v in versions:
        try:
            kubernetes_validate.validate(doc, v, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = "/".join(map(str, e.path)) or "<root>"
            raise ValueError(f"kubernetes {v}: {path}: {e.message}") from None


def describe(error: jsonschema.ValidationError) -> str:
    """One line per error; for a failed oneOf/anyOf, why each branch failed."""
    where = "/".join(map(str, error.absolute_path)) or "<root>"
    if not error.context:
        return f"{where}: {error.message}"
    branches: dict[Any, list[str]] = {}
    for sub in error.context:
        sub_where = "/".join(map(str, sub.absolute_path)) or "<root>"
        branches.setdefault(sub.schema_path[0], []).append(f"{sub_where}: {sub.message}")
    title = {0: "as v0.3.x", 1: "as v0.2.0"} if error.validator == "oneOf" and where.endswith("processor") else {}
    return f"{where}: fits no allowed form (" + " | ".join(
        f"{title.get(k, f'form {k}')}: {', '.join(v)}" for k, v in sorted(branches.items(), key=lambda kv: str(kv[0]))
    ) + ")"


def schema_id(name: str) -> str:
    return json.loads((SCHEMAS / name).read_text())["$id"]


# ---------------------------------------------------------------- policy


def cargo_version() -> str:
    with (REPO / "Cargo.toml").open("rb") as f:
        return tomllib.load(f)["package"]["version"]


def env_map(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def port_of(addr: str) -> int:
    return int(addr.rsplit(":", 1)[1])


def policy(rep: Report, label: str, docs: list[dict]) -> None:
    by_kind: dict[str, list[dict]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)

    def one(kind: str) -> dict | None:
        found = by_kind.get(kind, [])
        if rep.check(len(found) == 1, f"{label}: exactly one {kind}", f"found {len(found)}"):
            return found[0]
        return None

    ns, sa, ds = one("Namespace"), one("ServiceAccount"), one("DaemonSet")
    operations = by_kind.get("Operation", [])
    rep.check(not (RBAC_KINDS & set(by_kind)), f"{label}: no RBAC objects (the collector never calls the API server)")
    if not (ns and sa and ds):
        return
    ns_name = ns["metadata"]["name"]
    rep.check(
        ns_name not in ("kubediag", "default", "kube-system"),
        f"{label}: own namespace ({ns_name}), so that uninstalling removes nothing else",
    )
    for d in docs:
        scoped = d["kind"] in CLUSTER_SCOPED
        got = d["metadata"].get("namespace")
        rep.check(
            (got is None) if scoped else (got == ns_name),
            f"{label}: {doc_id(d)} namespace",
            f"expected {'none' if scoped else ns_name}, got {got}",
        )
    enforce = (ns["metadata"].get("labels") or {}).get("pod-security.kubernetes.io/enforce")
    rep.check(enforce == "privileged", f"{label}: namespace admits host namespaces (pod-security enforce=privileged)", str(enforce))
    rep.check(sa.get("automountServiceAccountToken") is False, f"{label}: ServiceAccount mounts no token")

    spec = ds["spec"]["template"]["spec"]
    rep.check(spec.get("serviceAccountName") == sa["metadata"]["name"], f"{label}: DaemonSet uses the ServiceAccount")
    rep.check(spec.get("automountServiceAccountToken") is False, f"{label}: pod mounts no API token")
    rep.check(spec.get("hostNetwork") is True, f"{label}: hostNetwork")
    rep.check(spec.get("hostPID") is True, f"{label}: hostPID")
    rep.check(spec.get("dnsPolicy") == "ClusterFirstWithHostNet", f"{label}: dnsPolicy ClusterFirstWithHostNet")
    rep.check(
        any(t == {"operator": "Exists"} for t in spec.get("tolerations", [])),
        f"{label}: tolerates every taint (operator: Exists, no key, no effect)",
    )
    sel = ds["spec"]["selector"]["matchLabels"]
    tpl_labels = ds["spec"]["template"]["metadata"]["labels"]
    rep.check(all(tpl_labels.get(k) == v for k, v in sel.items()), f"{label}: selector matches the pod template")

    containers = spec["containers"]
    if not rep.check(len(containers) == 1, f"{label}: one container", f"found {len(containers)}"):
        return
    c = containers[0]
    env = env_map(c)
    version = cargo_version()
    rep.check(
        c["image"] == f"pod-detail-collector:{version}",
        f"{label}: image is the one scripts/build-image tags (pod-detail-collector:{version})",
        c["image"],
    )
    rep.check(c.get("args", [None])[0] == "serve", f"{label}: runs `serve`")
    for name, path in (("NODE_NAME", "spec.nodeName"), ("HOST_IP", "status.hostIP")):
        ref = ((env.get(name) or {}).get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath")
        rep.check(ref == path, f"{label}: {name} from the downward API ({path})", str(ref))

    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    mounts = {m["name"]: m for m in c.get("volumeMounts", [])}

    def host_mount(host_path: str) -> tuple[dict | None, dict | None]:
        vol = next((v for v in volumes.values() if (v.get("hostPath") or {}).get("path") == host_path), None)
        return vol, (mounts.get(vol["name"]) if vol else None)

    # Any runtime: the directories of the well-known sockets, at the same paths, so the
    # collector finds the node's runtime itself (or the one DOCKER_HOST /
    # CONTAINER_RUNTIME_ENDPOINT names, which must then be under a mount).
    runtime_mounts = []
    for host_path in ("/run", "/var/run"):
        vol, m = host_mount(host_path)
        if rep.check(bool(vol and m), f"{label}: host {host_path} mounted (the runtime sockets)"):
            rep.check(m["mountPath"] == host_path, f"{label}: host {host_path} mounted at {host_path}", m["mountPath"])
            rep.check(m.get("readOnly") is True, f"{label}: host {host_path} mounted read-only")
            runtime_mounts.append(m["mountPath"])
    for var in ("DOCKER_HOST", "CONTAINER_RUNTIME_ENDPOINT"):
        value = (env.get(var) or {}).get("value")
        if value is not None:
            socket = value.removeprefix("unix://")
            rep.check(
                any(socket.startswith(mount.rstrip("/") + "/") for mount in runtime_mounts),
                f"{label}: {var} names a socket under a mounted directory",
                value,
            )
    rep.check(
        not ("DOCKER_HOST" in env and "CONTAINER_RUNTIME_ENDPOINT" in env),
        f"{label}: at most one of DOCKER_HOST and CONTAINER_RUNTIME_ENDPOINT",
    )
    for host_path, var in (
        ("/proc", "PDC_HOST_PROC"),
        ("/var/lib/kubelet", "PDC_KUBELET_ROOT"),
        ("/etc/kubernetes/manifests", "PDC_MANIFEST_DIR"),
        ("/var/log/pods", "PDC_POD_LOGS_DIR"),
    ):
        vol, m = host_mount(host_path)
        if rep.check(bool(vol and m), f"{label}: host {host_path} mounted"):
            rep.check(m.get("readOnly") is True, f"{label}: host {host_path} mounted read-only")
            rep.check(
                (env.get(var) or {}).get("value") == m["mountPath"],
                f"{label}: {var} is the mount path of host {host_path}",
                f"{(env.get(var) or {}).get('value')} vs {m['mountPath']}",
            )
    for name, vol in volumes.items():
        if "hostPath" in vol:
            rep.check((mounts.get(name) or {}).get("readOnly") is True, f"{label}: hostPath volume {name} read-only")

    listen = (env.get("PDC_LISTEN") or {}).get("value", "0.0.0.0:8095")
    listen_port = port_of(listen)
    ports = {p.get("name"): p for p in c.get("ports", [])}
    http = ports.get("http") or {}
    rep.check(
        http.get("containerPort") == listen_port and http.get("hostPort") == listen_port,
        f"{label}: port http is the listen port {listen_port}",
        str(http),
    )
    rep.check(listen_port != 8090, f"{label}: does not take the KubeDiag agent's port 8090")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = (c.get(probe) or {}).get("httpGet") or {}
        port = get.get("port")
        port = ports.get(port, {}).get("containerPort") if isinstance(port, str) else port
        rep.check(get.get("path") == path and port == listen_port, f"{label}: {probe} GET {path} on {listen_port}", str(get))

    res = c.get("resources") or {}
    rep.check(
        all(k in res.get(kind, {}) for kind in ("requests", "limits") for k in ("cpu", "memory")),
        f"{label}: cpu and memory requests and limits set",
    )
    for kind in ("requests", "limits"):
        for k, q in (res.get(kind) or {}).items():
            rep.check(bool(QUANTITY.match(str(q))), f"{label}: {kind}.{k} is a quantity", repr(q))
    sc = c.get("securityContext") or {}
    rep.check(sc.get("readOnlyRootFilesystem") is True, f"{label}: readOnlyRootFilesystem")
    rep.check(sc.get("allowPrivilegeEscalation") is False, f"{label}: allowPrivilegeEscalation false")
    rep.check(sc.get("privileged") is not True, f"{label}: not privileged")
    caps = sc.get("capabilities") or {}
    rep.check("ALL" in caps.get("drop", []) and not caps.get("add"), f"{label}: drops all capabilities, adds none")

    # Access: node-local (no --allow-from any), and the token of a mounted Secret, which every
    # Operation's path carries as ?token=.
    allow = str((env.get("PDC_ALLOW_FROM") or {}).get("value", ""))
    rep.check(
        "any" not in allow.lower().split(","),
        f"{label}: access not opened to any address (PDC_ALLOW_FROM)",
        allow,
    )
    token_file = (env.get("PDC_TOKEN_FILE") or {}).get("value")
    if rep.check(bool(token_file), f"{label}: requests need a token (PDC_TOKEN_FILE)"):
        mount = next(
            (m for m in c.get("volumeMounts", []) if token_file.startswith(m["mountPath"].rstrip("/") + "/")),
            None,
        )
        secret = (volumes.get(mount["name"]) or {}).get("secret") if mount else None
        if rep.check(bool(secret), f"{label}: the token file is in a mounted Secret", str(mount)):
            rep.check(mount.get("readOnly") is True, f"{label}: the token Secret is mounted read-only")
            key = token_file[len(mount["mountPath"].rstrip("/")) + 1:]
            items = secret.get("items")
            rep.check(
                items is None or any(i.get("path") == key for i in items),
                f"{label}: the Secret volume holds {key}",
                str(items),
            )
            rep.check(
                secret.get("optional") is not True,
                f"{label}: the token Secret is not optional (no token, no start)",
            )

    paths = []
    tokens = set()
    for op in operations:
        proc = op["spec"]["processor"]
        server = proc.get("httpServer")
        if server is not None:
            endpoint = (server.get("address"), server.get("port"), server.get("path"), server.get("scheme"))
        else:
            endpoint = (proc.get("externalIP"), proc.get("externalPort"), proc.get("path"), proc.get("scheme"))
        path, _, query = str(endpoint[2]).partition("?")
        paths.append(path)
        rep.check(
            path in PROCESSOR_PATHS and endpoint[:2] + endpoint[3:] == (None, listen_port, "http"),
            f"{label}: Operation calls http://<node>:{listen_port}{path}",
            str(endpoint),
        )
        if token_file:
            given = [q[len("token="):] for q in query.split("&") if q.startswith("token=")]
            if rep.check(
                len(given) == 1 and given[0] != "",
                f"{label}: Operation {op['metadata']['name']} carries the token (?token=)",
                str(endpoint[2]),
            ):
                tokens.add(given[0])
        rep.check(
            query == "" or token_file is not None,
            f"{label}: Operation {op['metadata']['name']} sends a token only when one is required",
            str(endpoint[2]),
        )
        rep.check(
            proc.get("timeoutSeconds") == OPERATION_TIMEOUT,
            f"{label}: Operation {op['metadata']['name']} timeoutSeconds {OPERATION_TIMEOUT}",
        )
    rep.check(
        sorted(paths) == sorted(PROCESSOR_PATHS),
        f"{label}: one Operation per processor",
        f"got {sorted(paths)}",
    )
    if token_file:
        rep.check(len(tokens) <= 1, f"{label}: every Operation carries the same token", f"{len(tokens)} different")
        rep.check(
            tokens <= {TOKEN_PLACEHOLDER},
            f"{label}: the manifests hold the placeholder {TOKEN_PLACEHOLDER}, never a real token",
        )


# ---------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--deploy", type=Path, default=REPO / "deploy")
    ap.add_argument("--k8s-version", action="append", dest="versions")
    ap.add_argument("--dump-json", type=Path, help="write {kustomization dir: [rendered docs]} here")
    ap.add_argument("-v", "--verbose", action="store_true", help="print passed checks too")
    args = ap.parse_args()
    versions = args.versions or DEFAULT_K8S_VERSIONS
    deploy = args.deploy.resolve()
    rep = Report(args.verbose)
    print(f"kubernetes-validate {kubernetes_validate.__version__}, Kubernetes {', '.join(versions)}, offline")

    registry = kubediag_registry()
    used: set[Path] = set()
    patches: set[Path] = set()
    rendered: dict[str, list[dict]] = {}
    for kfile in sorted(deploy.rglob("kustomization.yaml")):
        label = str(kfile.parent.relative_to(deploy.parent))
        try:
            rendered[label] = render(kfile.parent, used, patches)
        except Exception as e:  # noqa: BLE001
            rep.check(False, f"{label}: renders", f"{type(e).__name__}: {e}")
        else:
            rep.check(True, f"{label}: renders ({len(rendered[label])} objects)")

    # Every file on its own (patches are partial objects: checked once applied).
    files = sorted(p.resolve() for p in deploy.rglob("*") if p.suffix in (".yaml", ".yml"))
    for f in files:
        rel = f.relative_to(deploy.parent)
        if f.name == "kustomization.yaml":
            continue
        examples = deploy / "examples"
        rep.check(
            f in used or examples in f.parents,
            f"{rel}: used by a kustomization (or an example)",
            "no kustomization lists it",
        )
        if f in patches:
            continue
        try:
            docs = load_docs(f)
        except Exception as e:  # noqa: BLE001
            rep.check(False, f"{rel}: parses", str(e))
            continue
        for d in docs:
            rep.run(f"{rel}: {doc_id(d)} matches its schema", lambda d=d: validate_doc(d, versions, registry))

    for label, docs in rendered.items():
        for d in docs:
            rep.run(f"{label} (rendered): {doc_id(d)} matches its schema", lambda d=d: validate_doc(d, versions, registry))
        if (deploy.parent / label / "kustomization.yaml").exists() and any(d["kind"] == "DaemonSet" for d in docs) and any(
            d["kind"] == "Operation" for d in docs
        ):
            policy(rep, label, docs)
    rep.check(
        {"deploy", "deploy/kubediag-v0.2"} <= set(rendered),
        "installs for KubeDiag v0.3.x (deploy/) and v0.2.0 (deploy/kubediag-v0.2/)",
        str(sorted(rendered)),
    )

    if args.dump_json:
        args.dump_json.write_text(json.dumps(rendered, indent=2, sort_keys=True))
    print(f"manifests: {rep.passed} passed, {rep.failed} failed")
    return 0 if rep.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
