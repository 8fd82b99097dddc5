#!/usr/bin/env python3
"""Static checks for deploy/, for machines without Docker or a cluster (CI).

    python3 deploy/check.py [--extract-config PATH]

Checks that every YAML file under deploy/ parses, that the Kubernetes
manifests are well-formed and agree with each other and with the repository
(rules ConfigMap = rules/**/*.yaml but the unit tests, byte for byte, embedded config =
deploy/klaxon.yaml's keys), and sanity-checks the Dockerfile, compose file
and systemd unit. --extract-config writes the klaxon.yaml embedded in
kubernetes/configmap-config.yaml to PATH, for klaxon's own config loader.

Needs Python 3 and PyYAML. Exits 0 and prints "deploy/: N files OK", or
exits 1 after listing every problem.
"""

import argparse
import re
import sys
from pathlib import Path

try:
    import yaml
except ImportError:
    sys.exit("deploy/check.py: needs PyYAML (pip install pyyaml)")

DEPLOY = Path(__file__).resolve().parent
ROOT = DEPLOY.parent
K8S = DEPLOY / "kubernetes"
RULES = ROOT / "rules"
EXAMPLE_CONFIG = DEPLOY / "klaxon.yaml"

PROBES = {"livenessProbe": "/healthz", "readinessProbe": "/readyz"}
UNIT_SECTIONS = ("Unit", "Service", "Install")


class Checker:
    def __init__(self):
        self.problems = []
        self.checked = set()

    def fail(self, path, message):
        self.problems.append(f"{rel(path)}: {message}")

    def saw(self, path):
        self.checked.add(path)


def rel(path):
    try:
        return str(Path(path).relative_to(ROOT))
    except ValueError:
        return str(path)


def load_all_yaml(c):
    """Every *.yaml / *.yml under deploy/, as {path: [documents]}."""
    docs = {}
    files = sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
    for path in files:
        c.saw(path)
        try:
            with open(path, encoding="utf-8") as f:
                docs[path] = [d for d in yaml.safe_load_all(f) if d is not None]
        except yaml.YAMLError as e:
            c.fail(path, f"not valid YAML: {' '.join(str(e).split())}")
        except (OSError, UnicodeDecodeError) as e:
            c.fail(path, f"cannot read: {e}")
    return docs


def get(obj, *keys):
    """obj[k1][k2]..., or None where the path does not exist."""
    for k in keys:
        if isinstance(obj, dict):
            obj = obj.get(k)
        elif isinstance(obj, list) and isinstance(k, int) and 0 <= k < len(obj):
            obj = obj[k]
        else:
            return None
    return obj


def check_manifests(c, docs):
    """apiVersion/kind/metadata.name, and the kustomization lists them all.
    Returns {(kind, name): (path, document)}."""
    objects = {}
    kustomization = None
    for path, ds in docs.items():
        if K8S not in path.parents:
            continue
        for i, d in enumerate(ds):
            where = f"document {i + 1}" if len(ds) > 1 else "manifest"
            if not isinstance(d, dict):
                c.fail(path, f"{where} is not a mapping")
                continue
            missing = [k for k in ("apiVersion", "kind") if not d.get(k)]
            if d.get("kind") == "Kustomization":
                kustomization = (path, d)
            elif not get(d, "metadata", "name"):
                missing.append("metadata.name")
            if missing:
                c.fail(path, f"{where} lacks {', '.join(missing)}")
                continue
            key = (d["kind"], get(d, "metadata", "name"))
            if key in objects and key[0] != "Kustomization":
                c.fail(path, f"{key[0]} {key[1]} is also defined in {rel(objects[key][0])}")
            objects[key] = (path, d)

    if kustomization is None:
        c.fail(K8S / "kustomization.yaml", "missing")
        return objects
    kpath, k = kustomization
    listed = set()
    for r in k.get("resources") or []:
        target = kpath.parent / r
        listed.add(target.resolve())
        if not target.exists():
            c.fail(kpath, f"resource {r} does not exist")
    for path, ds in docs.items():
        if path.parent == K8S and path != kpath and ds and path.resolve() not in listed:
            c.fail(kpath, f"{path.name} is not listed in resources")
    return objects


def check_deployment(c, objects):
    found = [(p, d) for (kind, _), (p, d) in objects.items() if kind == "Deployment"]
    if not found:
        c.fail(K8S, "no Deployment")
        return None
    path, d = found[0]
    spec = get(d, "spec", "template", "spec") or {}
    volumes = {v.get("name"): v for v in spec.get("volumes") or []}
    containers = spec.get("containers") or []
    if not containers:
        c.fail(path, "the Deployment has no containers")
        return None

    for v in volumes.values():
        for kind, ref in (("ConfigMap", get(v, "configMap", "name")), ("Secret", get(v, "secret", "secretName"))):
            if ref and (kind, ref) not in objects:
                c.fail(path, f"volume {v.get('name')} uses {kind} {ref}, which no manifest defines")

    mounts = {}
    for ctr in containers:
        name = ctr.get("name")
        for m in ctr.get("volumeMounts") or []:
            if m.get("name") not in volumes:
                c.fail(path, f"container {name} mounts volume {m.get('name')}, which spec.volumes lacks")
            if m.get("subPath"):
                c.fail(path, f"container {name} mounts {m.get('mountPath')} with subPath: it would never see updates")
            mounts[m.get("mountPath")] = volumes.get(m.get("name"))
        for probe, want in PROBES.items():
            got = get(ctr, probe, "httpGet", "path")
            if got != want:
                c.fail(path, f"container {name}: {probe} path is {got!r}, expected {want!r}")

    # The file the container is told to read is a key of the mounted ConfigMap.
    args = (containers[0].get("command") or []) + (containers[0].get("args") or [])
    if "--config" in args[:-1]:
        cfg = args[args.index("--config") + 1]
        mount_path, key = cfg.rsplit("/", 1)
        cm = get(mounts.get(mount_path), "configMap", "name")
        data = get(objects.get(("ConfigMap", cm), (None, {}))[1], "data") or {}
        if key not in data:
            c.fail(path, f"--config {cfg}: no ConfigMap with key {key} is mounted at {mount_path}")
    else:
        c.fail(path, "container args lack --config PATH")
    return mounts


def check_rules_configmap(c, objects):
    path, cm = objects.get(("ConfigMap", "klaxon-rules"), (K8S / "configmap-rules.yaml", None))
    if cm is None:
        c.fail(path, "no ConfigMap klaxon-rules")
        return
    data = cm.get("data") or {}
    # Every YAML file under rules/ but the unit tests, keyed by its path
    # with / as . (a ConfigMap is flat).
    files = {
        str(p.relative_to(RULES)).replace("/", "."): p
        for p in sorted(RULES.rglob("*.yaml"))
        if "tests" not in p.relative_to(RULES).parts
    }
    regen = "; run deploy/kubernetes/gen-rules-configmap.sh"
    if set(data) != set(files):
        extra, lacking = sorted(set(data) - set(files)), sorted(set(files) - set(data))
        detail = "; ".join(
            s for s in (extra and f"not in {rel(RULES)}: {', '.join(extra)}",
                        lacking and f"missing: {', '.join(lacking)}") if s)
        c.fail(path, f"klaxon-rules keys differ from {rel(RULES)}/**/*.yaml ({detail}){regen}")
    for name in sorted(set(data) & set(files)):
        want = files[name].read_bytes().decode("utf-8", errors="replace")
        got = data[name]
        if got != want:
            w, g = want.splitlines(keepends=True), str(got).splitlines(keepends=True)
            line = next((i for i, (a, b) in enumerate(zip(w, g)) if a != b), min(len(w), len(g)))
            c.fail(path, f"klaxon-rules key {name} differs from {rel(files[name])} (from line {line + 1}){regen}")


def embedded_config(c, objects):
    path, cm = objects.get(("ConfigMap", "klaxon-config"), (K8S / "configmap-config.yaml", None))
    text = get(cm, "data", "klaxon.yaml")
    if not isinstance(text, str):
        c.fail(path, "no ConfigMap klaxon-config with a klaxon.yaml key")
        return path, None
    return path, text


def check_embedded_config(c, path, text, mounts, objects):
    try:
        embedded = yaml.safe_load(text)
    except yaml.YAMLError as e:
        c.fail(path, f"klaxon.yaml in klaxon-config is not valid YAML: {' '.join(str(e).split())}")
        return
    try:
        example = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return  # reported by load_all_yaml
    if not isinstance(embedded, dict) or not isinstance(example, dict):
        c.fail(path, "klaxon.yaml in klaxon-config and deploy/klaxon.yaml must both be mappings")
        return
    for what, a, b in (("top-level", embedded, example),
                       ("`kafka`", embedded.get("kafka") or {}, example.get("kafka") or {})):
        if set(a) != set(b):
            c.fail(path, f"klaxon.yaml's {what} keys {sorted(a)} differ from deploy/klaxon.yaml's {sorted(b)}")

    # Every `{ file: ... }` property lives in a mounted Secret that has the key.
    for name, value in (get(embedded, "kafka", "properties") or {}).items():
        file = get(value, "file")
        if not isinstance(file, str) or mounts is None:
            continue
        mount_path, key = file.rsplit("/", 1)
        secret = get(mounts.get(mount_path), "secret", "secretName")
        s = objects.get(("Secret", secret), (None, {}))[1]
        if key not in (s.get("stringData") or {}) and key not in (s.get("data") or {}):
            c.fail(path, f"property {name} reads {file}, but no Secret with key {key} is mounted at {mount_path}")


def check_compose(c, docs):
    path = DEPLOY / "compose.yaml"
    ds = docs.get(path)
    if not ds:
        if path.exists() and path not in docs:
            return  # syntax error, already reported
        c.fail(path, "missing or empty")
        return
    services = get(ds[0], "services") or {}
    for s in ("kafka", "topics", "klaxon"):
        if s not in services:
            c.fail(path, f"no service {s}")
    build = get(services, "klaxon", "build") or {}
    if isinstance(build, str):
        build = {"context": build}
    context = DEPLOY / build.get("context", ".")
    if not (context / build.get("dockerfile", "Dockerfile")).is_file():
        c.fail(path, f"klaxon build: {build.get('dockerfile')} not found in context {build.get('context')}")
    for v in get(services, "klaxon", "volumes") or []:
        src = v.split(":")[0] if isinstance(v, str) else v.get("source", "")
        if src.startswith((".", "/")) and not (DEPLOY / src).exists():
            c.fail(path, f"klaxon volume source {src} does not exist")


def check_systemd(c):
    units = sorted((DEPLOY / "systemd").glob("*.service"))
    if not units:
        c.fail(DEPLOY / "systemd", "no .service unit")
    for path in units:
        c.saw(path)
        sections, keys = [], set()
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            line = line.strip()
            if not line or line.startswith(("#", ";")):
                continue
            m = re.fullmatch(r"\[([^\]]+)\]", line)
            if m:
                sections.append(m.group(1))
            elif "=" in line:
                keys.add((sections[-1] if sections else None, line.split("=", 1)[0].strip()))
            else:
                c.fail(path, f"line {n}: neither a [section] nor a Key=value")
        for s in UNIT_SECTIONS:
            if s not in sections:
                c.fail(path, f"no [{s}] section")
        if ("Service", "ExecStart") not in keys:
            c.fail(path, "no ExecStart= in [Service]")


def check_dockerfile(c):
    path = DEPLOY / "Dockerfile"
    if not path.is_file():
        c.fail(path, "missing")
        return
    c.saw(path)
    # Join continuation lines, drop comments and parser directives.
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    lines = [l.strip() for l in text.splitlines() if l.strip() and not l.strip().startswith("#")]
    instructions = [(l.split(None, 1)[0].upper(), (l.split(None, 1) + [""])[1].strip()) for l in lines]
    froms = [a for i, a in instructions if i == "FROM"]
    if len(froms) < 2:
        c.fail(path, f"{len(froms)} FROM line(s): expected a multi-stage build")
    # The USER that counts is the last one in the final stage.
    last_from = max(n for n, (i, _) in enumerate(instructions) if i == "FROM") if froms else 0
    users = [a for i, a in instructions[last_from:] if i == "USER"]
    if not users:
        c.fail(path, "the final stage sets no USER: the image would run as root")
    elif users[-1].split(":")[0] in ("root", "0"):
        c.fail(path, f"the final stage runs as USER {users[-1]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--extract-config", metavar="PATH", type=Path,
                    help="write klaxon.yaml from kubernetes/configmap-config.yaml to PATH")
    opts = ap.parse_args()

    c = Checker()
    docs = load_all_yaml(c)
    objects = check_manifests(c, docs)
    mounts = check_deployment(c, objects)
    check_rules_configmap(c, objects)
    cm_path, config_text = embedded_config(c, objects)
    if config_text is not None:
        check_embedded_config(c, cm_path, config_text, mounts, objects)
        if opts.extract_config:
            opts.extract_config.parent.mkdir(parents=True, exist_ok=True)
            opts.extract_config.write_text(config_text, encoding="utf-8")
    check_compose(c, docs)
    check_systemd(c)
    check_dockerfile(c)

    if c.problems:
        for p in c.problems:
            print(f"deploy/check.py: {p}", file=sys.stderr)
        print(f"deploy/: {len(c.problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"deploy/: {len(c.checked)} files OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
