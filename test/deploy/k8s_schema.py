"""Checks Kubernetes manifests offline against the API's own models, and prints them as JSON.

Usage: /usr/bin/python3 k8s_schema.py FILE.yaml...

Debian's python3-kubernetes carries a model class per API object, generated from Kubernetes'
OpenAPI spec (its field names, their types, the required ones). Each document is read into its
model and written back: a field the API does not have (a typo, a field at the wrong level) is
dropped on the way, a value of the wrong type is converted or refused, a required field missing
is refused; any difference between what went in and what came out is a problem.

python3-kubernetes 22 has the Kubernetes 1.22 API. Fields added since are listed in
NEWER_FIELDS, each with its version and its own check, and taken out before the round trip.

Prints {"schema": ..., "files": {FILE: [document, ...]}, "problems": [...], "newer": [...]}:
the documents parsed (the test checks their structure further), what is wrong, and which newer
fields were met. Exits 0 even with problems (the test reports them); 2 if it cannot run.
"""
import json
import sys

try:
    import yaml
    import kubernetes
    from kubernetes import client
except ImportError as err:  # pragma: no cover
    print(f"k8s_schema: {err} (scripts/install-deps.sh installs python3-kubernetes)", file=sys.stderr)
    sys.exit(2)

APPARMOR_TYPES = {"RuntimeDefault", "Unconfined", "Localhost"}


def check_apparmor(value):
    """securityContext.appArmorProfile (Kubernetes 1.30): {type, localhostProfile?}."""
    if not isinstance(value, dict) or set(value) - {"type", "localhostProfile"}:
        return "must be {type, localhostProfile}"
    if value.get("type") not in APPARMOR_TYPES:
        return f"type must be one of {sorted(APPARMOR_TYPES)}"
    if ("localhostProfile" in value) != (value["type"] == "Localhost"):
        return "localhostProfile goes with type Localhost, and only with it"
    return None


# Fields newer than the models: the parent key they sit in, their name, since when, their check.
NEWER_FIELDS = [
    ("securityContext", "appArmorProfile", "1.30", check_apparmor),
]

# Not Kubernetes API objects: read, checked by the test's own structure checks only.
NOT_API = {"kustomize.config.k8s.io/v1beta1"}


def take_newer(node, path, newer, problems):
    """Removes the NEWER_FIELDS from `node` (in place), checking each."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, dict):
                for parent, name, version, check in NEWER_FIELDS:
                    if key == parent and name in value:
                        where = f"{path}.{key}.{name}"
                        newer.append({"path": where, "since": version})
                        error = check(value.pop(name))
                        if error:
                            problems.append(f"{where}: {error}")
            take_newer(value, f"{path}.{key}", newer, problems)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            take_newer(value, f"{path}[{i}]", newer, problems)


def differences(before, after, path):
    """Where the round trip changed the document: fields dropped, values converted."""
    if isinstance(before, dict) and isinstance(after, dict):
        out = []
        for key, value in before.items():
            if key not in after:
                out.append(f"{path}.{key}: not a field of the API (dropped by the model)")
            else:
                out.extend(differences(value, after[key], f"{path}.{key}"))
        return out
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return [d for i, (b, a) in enumerate(zip(before, after)) for d in differences(b, a, f"{path}[{i}]")]
    if before != after or type(before) is not type(after):
        return [f"{path}: {json.dumps(before)} is not of the API's type (read as {json.dumps(after)})"]
    return []


class Response:
    """What ApiClient.deserialize reads: an HTTP answer's body."""

    def __init__(self, document):
        self.data = json.dumps(document)


def model_name(api_version, kind):
    version = api_version.split("/")[-1]
    return version[0].upper() + version[1:] + kind


def main(files):
    api = client.ApiClient()
    out = {"schema": f"python3-kubernetes {kubernetes.__version__}", "files": {}, "problems": [], "newer": []}
    for file in files:
        with open(file, encoding="utf-8") as stream:
            documents = [d for d in yaml.safe_load_all(stream) if d is not None]
        out["files"][file] = documents
        for index, document in enumerate(documents):
            where = f"{file}[{index}]"
            api_version, kind = document.get("apiVersion"), document.get("kind")
            if api_version in NOT_API:
                continue
            name = model_name(str(api_version), str(kind))
            if not hasattr(client, name):
                out["problems"].append(f"{where}: no API object {kind} in {api_version}")
                continue
            trimmed = json.loads(json.dumps(document))
            take_newer(trimmed, where, out["newer"], out["problems"])
            try:
                model = api.deserialize(Response(trimmed), name)
            except (ValueError, TypeError) as err:
                out["problems"].append(f"{where} ({kind}): {err}")
                continue
            back = api.sanitize_for_serialization(model)
            out["problems"].extend(differences(trimmed, back, f"{where}"))
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1:])
