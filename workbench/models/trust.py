"""Model files are programs: what the workbench checks before anything runs one.

A SavedModel is a TensorFlow graph, and a graph may read and write files (``ReadFile``,
``WriteFile``), list folders, write summaries or checkpoints anywhere, call other machines
(``RemoteCall``, the RPC and data-service ops) or end the process (``Abort``). A Keras file
may hold Python byte code (a ``Lambda`` layer). Loading such a file and calling it runs that
code with the rights of whoever loads it: ``assess``, the model server, a notebook.

So before TensorFlow executes a SavedModel, :func:`check_saved_model` reads its graphs
(``saved_model.pb`` or ``.pbtxt``), the main graph and the whole function library, and refuses
it with the list of ops it found from :data:`DENIED_OPS`. The list starts from
``saved_model_cli scan``'s deny list (``WriteFile``, ``ReadFile``, ``PrintV2``) and adds the
other ops that reach the file system, other processes or the network. ``SaveV2`` /
``RestoreV2`` and the other checkpoint ops are allowed only in the save and restore functions
that every SavedModel carries (those its ``saver_def`` names), which TensorFlow 2 never runs
on loading. A tf-keras SavedModel's ``keras_metadata.pb`` is also read for Python ``lambda``
byte code (:func:`python_lambdas`). Keras files are loaded in Keras' safe mode
(:mod:`workbench.models.loading`).

``trust_model=True`` (``--trust-model``) skips the refusal, with :func:`trust_warning`: only
for files whose author you trust as you would trust their code.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

SAVED_MODEL_PB = "saved_model.pb"
SAVED_MODEL_PBTXT = "saved_model.pbtxt"
KERAS_METADATA = "keras_metadata.pb"

_FILES = "reads or writes files"
_PROCESS = "controls the process"
_NETWORK = "talks to other machines"
_CODE = "runs host code"

# op -> what it does. saved_model_cli's default deny list is WriteFile, ReadFile, PrintV2
# (PrintV2 may print to a file: output_stream="file://..."); the rest extends it.
DENIED_OPS: dict[str, str] = {
    **dict.fromkeys(
        [
            "ReadFile",
            "WriteFile",
            "PrintV2",
            "MatchingFiles",
            "MatchingFilesDataset",
            "FileSystemSetConfiguration",
            "ImmutableConst",
            "InitializeTableFromTextFile",
            "InitializeTableFromTextFileV2",
            "Skipgram",
            "DecodeProtoV2",
            "LoadAndRemapMatrix",
            "GenerateVocabRemapping",
            "Save",
            "SaveV2",
            "SaveSlices",
            "Restore",
            "RestoreV2",
            "RestoreSlice",
            "MergeV2Checkpoints",
            "WholeFileReader",
            "WholeFileReaderV2",
            "TextLineReader",
            "TextLineReaderV2",
            "FixedLengthRecordReader",
            "FixedLengthRecordReaderV2",
            "TFRecordReader",
            "TFRecordReaderV2",
            "LMDBReader",
            "TextLineDataset",
            "TFRecordDataset",
            "TFRecordDatasetV2",
            "FixedLengthRecordDataset",
            "FixedLengthRecordDatasetV2",
            "CSVDataset",
            "CSVDatasetV2",
            "ExperimentalCSVDataset",
            "LMDBDataset",
            "ExperimentalLMDBDataset",
            "SqlDataset",
            "ExperimentalSqlDataset",
            "CacheDataset",
            "CacheDatasetV2",
            "SnapshotDataset",
            "SnapshotDatasetV2",
            "SnapshotDatasetReader",
            "SnapshotNestedDatasetReader",
            "SaveDataset",
            "SaveDatasetV2",
            "LoadDataset",
            "DatasetToTFRecord",
            "ExperimentalDatasetToTFRecord",
            "CreateSummaryFileWriter",
            "CreateSummaryDbWriter",
            "WriteSummary",
            "WriteRawProtoSummary",
            "WriteScalarSummary",
            "WriteHistogramSummary",
            "WriteImageSummary",
            "WriteAudioSummary",
            "WriteGraphSummary",
            "ImportEvent",
            "DebugIdentity",
            "DebugIdentityV2",
            "DebugIdentityV3",
            "DebugNanCount",
            "DebugNumericSummary",
            "DebugNumericSummaryV2",
        ],
        _FILES,
    ),
    **dict.fromkeys(["Abort"], _PROCESS),
    **dict.fromkeys(["PyFunc", "PyFuncStateless", "EagerPyFunc"], _CODE),
    **dict.fromkeys(
        [
            "RemoteCall",
            "RpcClient",
            "RpcCall",
            "RpcServer",
            "RpcServerStart",
            "RpcServerRegister",
            "RpcCheckStatus",
            "RpcGetValue",
            "DataServiceDataset",
            "DataServiceDatasetV2",
            "DataServiceDatasetV3",
            "DataServiceDatasetV4",
            "RegisterDataset",
            "RegisterDatasetV2",
            "DistributedSave",
            "GcsConfigureCredentials",
            "GcsConfigureBlockCache",
            "BigQueryReader",
            "GenerateBigQueryReaderPartitions",
            "CollectiveGather",
            "CollectiveGatherV2",
            "CollectiveReduce",
            "CollectiveReduceV2",
            "CollectiveReduceV3",
            "CollectiveBcastSend",
            "CollectiveBcastRecv",
            "CollectiveBcastSendV2",
            "CollectiveBcastRecvV2",
            "CollectiveAllToAllV2",
            "CollectiveAllToAllV3",
            "CollectiveInitializeCommunicator",
            "CollectiveAssignGroupV2",
        ],
        _NETWORK,
    ),
}

# What the checkpoint functions of every SavedModel use (saver_def): allowed there only.
SAVER_OPS = frozenset(
    {"Save", "SaveV2", "SaveSlices", "Restore", "RestoreV2", "RestoreSlice", "MergeV2Checkpoints"}
)

TRUST_HINT = (
    "A model file is code: load it only if you trust whoever wrote it as you would trust a "
    "program from them. If you do, pass --trust-model (trust_model=True)."
)


class UntrustedModelError(ValueError):
    """A model file holds code the workbench will not run without ``--trust-model``."""


@dataclass(frozen=True)
class Finding:
    """One denied op: its type, what it does, and the function (or graph) that holds it."""

    op: str
    does: str
    where: str

    def __str__(self) -> str:
        return f"{self.op} ({self.does}) in {self.where}"


def scan_saved_model(path: str | Path) -> list[Finding]:
    """Every denied op in a SavedModel's graphs, without executing or importing anything.

    Reads ``saved_model.pb`` (or ``.pbtxt``): for each meta graph, the main graph's nodes and
    every function of its library, following function references (``f`` attributes,
    ``While``/``If`` bodies, functions called as ops).

    Raises:
        FileNotFoundError: no SavedModel graph in ``path``.
        ValueError: the graph file cannot be parsed.
    """
    from google.protobuf import message, text_format
    from tensorflow.core.protobuf import saved_model_pb2

    folder = Path(path)
    proto = saved_model_pb2.SavedModel()
    try:
        if (folder / SAVED_MODEL_PB).is_file():
            proto.ParseFromString((folder / SAVED_MODEL_PB).read_bytes())
        elif (folder / SAVED_MODEL_PBTXT).is_file():
            text_format.Parse((folder / SAVED_MODEL_PBTXT).read_text(), proto)
        else:
            raise FileNotFoundError(f"{folder} holds no {SAVED_MODEL_PB}: not a SavedModel")
    except (message.DecodeError, text_format.ParseError, UnicodeDecodeError) as err:
        raise ValueError(f"{folder}'s graph cannot be parsed ({err})") from err
    findings: list[Finding] = []
    for meta_graph in proto.meta_graphs:
        findings += _scan_meta_graph(meta_graph)
    return sorted(set(findings), key=lambda f: (f.op, f.where))


def _scan_meta_graph(meta_graph) -> list[Finding]:
    graph = meta_graph.graph_def
    library = {f.signature.name: f for f in graph.library.function}
    saver_nodes = _saver_nodes(graph, meta_graph.saver_def)
    found: list[Finding] = []
    live_roots: set[str] = set(meta_graph.object_graph_def.concrete_functions)
    saver_roots: set[str] = set()
    for node in graph.node:
        in_saver = node.name in saver_nodes
        if node.op in DENIED_OPS and not (in_saver and node.op in SAVER_OPS):
            found.append(
                Finding(node.op, DENIED_OPS[node.op], f"the main graph (node {node.name})")
            )
        (saver_roots if in_saver else live_roots).update(_references(node, library))
    saver_only = _reach(saver_roots, library) - _reach(live_roots, library)
    for name, function in library.items():
        allowed = SAVER_OPS if name in saver_only else frozenset()
        for op in {n.op for n in function.node_def}:
            if op in DENIED_OPS and op not in allowed:
                found.append(Finding(op, DENIED_OPS[op], f"function {name}"))
    return found


def _saver_nodes(graph, saver_def) -> set[str]:
    """The main-graph nodes of the checkpoint save/restore ops and everything feeding them."""
    by_name = {n.name: n for n in graph.node}
    todo = [
        name.lstrip("^").split(":")[0]
        for name in (saver_def.save_tensor_name, saver_def.restore_op_name)
        if name
    ]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen or name not in by_name:
            continue
        seen.add(name)
        todo += [i.lstrip("^").split(":")[0] for i in by_name[name].input]
    return seen


def _references(node, library: dict) -> set[str]:
    """Library functions a node calls: its function attributes, or its op if that is one."""
    refs = {node.op} if node.op in library else set()
    for value in node.attr.values():
        if value.HasField("func"):
            refs.add(value.func.name)
        if value.HasField("list"):
            refs.update(f.name for f in value.list.func)
    return refs


def _reach(roots: set[str], library: dict) -> set[str]:
    seen: set[str] = set()
    todo = [r for r in roots if r in library]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for node in library[name].node_def:
            todo += [r for r in _references(node, library) if r not in seen]
    return seen


def python_lambdas(folder: str | Path) -> list[str]:
    """Layers of a tf-keras SavedModel whose ``keras_metadata.pb`` holds Python byte code.

    A ``Lambda`` layer saved with a Python ``lambda`` stores its byte code; tf-keras would
    rebuild (and run) it on loading outside safe mode.
    """
    path = Path(folder) / KERAS_METADATA
    if not path.is_file():
        return []
    from google.protobuf import message
    from tf_keras.protobuf import saved_metadata_pb2

    metadata = saved_metadata_pb2.SavedMetadata()
    try:
        metadata.ParseFromString(path.read_bytes())
    except message.DecodeError as err:
        raise ValueError(f"{path} cannot be parsed ({err})") from err
    names: list[str] = []
    for node in metadata.nodes:
        try:
            doc = json.loads(node.metadata)
        except ValueError:
            continue
        names += _lambda_layers(doc)
    return sorted(set(names))


def _lambda_layers(doc) -> list[str]:
    found: list[str] = []
    if isinstance(doc, dict):
        config = doc.get("config") if isinstance(doc.get("config"), dict) else doc
        if config.get("function_type") == "lambda":
            found.append(str(config.get("name") or doc.get("name") or "a Lambda layer"))
        for value in doc.values():
            found += _lambda_layers(value)
    elif isinstance(doc, list):
        for value in doc:
            found += _lambda_layers(value)
    return found


def check_saved_model(path: str | Path, *, trust_model: bool = False) -> None:
    """Refuse a SavedModel whose graphs reach files, processes or the network, before it runs.

    Args:
        path: the SavedModel folder.
        trust_model: run it anyway (with :func:`trust_warning`).

    Raises:
        UntrustedModelError: naming every denied op and where it is (or the Lambda layers).
        FileNotFoundError, ValueError: no parsable SavedModel at ``path``.
    """
    findings = [str(f) for f in scan_saved_model(path)]
    lambdas = python_lambdas(path)
    if lambdas:
        findings.append(f"Python byte code in the Lambda layer(s) {', '.join(lambdas)}")
    if not findings:
        return
    if trust_model:
        trust_warning(path, findings)
        return
    shown = "; ".join(findings[:12]) + (
        f"; and {len(findings) - 12} more" if len(findings) > 12 else ""
    )
    raise UntrustedModelError(
        f"Refusing to run the SavedModel {path}: its graph holds operations that reach beyond "
        f"computing a prediction: {shown}. {TRUST_HINT}"
    )


def trust_warning(path: str | Path, findings: list[str] | None = None) -> str:
    """Warn that ``path`` is loaded as trusted code; return the text."""
    what = f" It holds: {'; '.join(findings[:6])}." if findings else ""
    text = (
        f"--trust-model: loading {path} without the safety checks. A model file is code and "
        f"runs with your rights (files, network, processes).{what}"
    )
    warnings.warn(text, UserWarning, stacklevel=3)
    return text
