"""The subject manifest: which subjects a published run admitted, as keyed hashes in a file beside its output.

A manifest is what lets a later revocation be traced to the runs (and models) that already used the
subject. It holds no id: each admitted subject is the HMAC-SHA256 of its normalised id under the
**manifest key**, a secret kept apart from the pseudonym key (``PHI_GUARD_MANIFEST_KEY`` outside Airflow,
a connection's password inside), and the message is prefixed with a fixed label, so that even a key
reused by mistake gives hashes that differ from the governed set's pseudonyms.

The file is Parquet with one column, :data:`MANIFEST_COLUMN`, of 32-byte binary digests, distinct and
sorted, so that its content says nothing about the order of the rows. It lives at
:func:`manifest_path` of the output (``<output>.subjects.parquet``), is written and withdrawn together with
the governed set by the engine, and is pinned by its SHA-256 in the report and the lineage, so that a
manifest changed after its run is detected rather than trusted.

The subject ids are hashed as the admission compared them, normalised by the policy's rule
(:func:`~airflow_phi_guard.consent.admission.normalize_subject_ids`: trimmed, UUIDs case-folded unless the
policy says otherwise, blank ids left out). The rule is recorded with the manifest, so that impact
normalises the registry's ids the same way and a subject hashed from the dataset at run time and from the
registry at impact time gives the same digest.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from airflow_phi_guard.consent.admission import DEFAULT_NORMALIZATION, normalize_subject_ids
from airflow_phi_guard.exceptions import SubjectManifestError
from airflow_phi_guard.policy.models import SubjectIdNormalization
from airflow_phi_guard.report import SubjectManifestRecord

log = logging.getLogger(__name__)

#: The environment variable that holds the manifest key outside Airflow.
MANIFEST_KEY_VARIABLE = "PHI_GUARD_MANIFEST_KEY"

#: What the manifest's file name adds to the output's.
MANIFEST_SUFFIX = ".subjects.parquet"

#: The manifest's one column.
MANIFEST_COLUMN = "subject_hmac_sha256"
MANIFEST_TYPE = pa.binary(32)

#: The shortest manifest key accepted, as for the pseudonym key: a shorter one could be found offline from
#: the hashes of a few known ids, and every hash of an enumerable id (an MRN) then reversed.
MINIMUM_KEY_BYTES = 32

#: Prefixed to every hashed id, so that manifest hashes never equal pseudonyms under the same key.
_MESSAGE_LABEL = b"airflow-phi-guard subject manifest v1\x00"
_FINGERPRINT_LABEL = b"airflow-phi-guard manifest key fingerprint v1"

_READ_CHUNK = 1 << 20


def manifest_path(output: str | os.PathLike[str]) -> Path:
    """Where the manifest of a governed dataset lives: beside it, ``<output>.subjects.parquet``.

    :param output: the governed dataset's path.
    """
    # Known shortcoming: the name depends on the output alone, so a later run at the same output replaces
    # the manifest of an earlier one, whose recorded digest then no longer matches and revocation impact
    # cannot answer for it. Outputs named per run (``{{ ds }}`` in the path) avoid it; keeping a manifest
    # per run (a name with the run's digest, and an archive that withdrawal leaves alone) would fix it.
    target = Path(output)
    return target.with_name(target.name + MANIFEST_SUFFIX)


def manifest_key_fingerprint(key: bytes) -> str:
    """A fingerprint that records which manifest key a run used, never the key: 16 hex digits.

    :param key: the manifest key.
    :raises ValueError: for an empty key.
    """
    if not key:
        raise ValueError("the manifest key is empty")
    return hmac.new(key, _FINGERPRINT_LABEL, hashlib.sha256).hexdigest()[:16]


def normalise_subject_ids(
    values: pa.Array | pa.ChunkedArray, rule: SubjectIdNormalization = DEFAULT_NORMALIZATION
) -> pa.Array:
    """The distinct subject ids of a column as the admission compares them, blanks left out.

    :param values: a subject column, text or integers (integers count as their decimal text).
    :param rule: the policy's normalisation, as recorded with the manifest.
    """
    normalised = normalize_subject_ids(values, rule)
    present = pc.fill_null(pc.greater(pc.utf8_length(normalised), 0), False)
    return pc.unique(normalised.filter(present))


def hash_subjects(ids: pa.Array, key: bytes) -> pa.Array:
    """The keyed hash of each normalised subject id, as 32-byte binary, in the order given.

    :param ids: normalised ids, from :func:`normalise_subject_ids`.
    :param key: the manifest key.
    :raises ValueError: for an empty key.
    """
    if not key:
        raise ValueError("the manifest key is empty")
    # Keying once and copying the state per id saves the two key-block hashes of each call.
    keyed = hmac.new(key, _MESSAGE_LABEL, hashlib.sha256)
    digests = []
    for subject in ids.to_pylist():
        mac = keyed.copy()
        mac.update(subject.encode("utf-8"))
        digests.append(mac.digest())
    return pa.array(digests, MANIFEST_TYPE)


def manifest_table(ids: pa.Array, key: bytes) -> pa.Table:
    """The manifest's content: the distinct keyed hashes of ``ids``, sorted.

    :param ids: normalised subject ids.
    :param key: the manifest key.
    """
    hashes = pc.unique(hash_subjects(ids, key))
    hashes = hashes.take(pc.sort_indices(hashes))
    return pa.table({MANIFEST_COLUMN: hashes})


def write_manifest(
    ids: pa.Array,
    path: str | os.PathLike[str],
    key: bytes,
    *,
    subject_ids: SubjectIdNormalization = DEFAULT_NORMALIZATION,
) -> SubjectManifestRecord:
    """Write a manifest atomically (a hidden temporary file renamed into place) and describe it.

    :param ids: the ids of the admitted subjects, normalised by ``subject_ids``.
    :param path: the manifest file, see :func:`manifest_path`.
    :param key: the manifest key.
    :param subject_ids: the rule that normalised ``ids``, recorded for impact.
    :raises OSError: the file could not be written; nothing is left at ``path`` then.
    """
    target = Path(path)
    table = manifest_table(ids, key)
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        pq.write_table(table, temporary)
        digest = file_digest(temporary)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return SubjectManifestRecord(
        path=str(target),
        digest=digest,
        key_fingerprint=manifest_key_fingerprint(key),
        subjects=table.num_rows,
        subject_ids=subject_ids,
    )


def withdraw_manifest(output: str | os.PathLike[str]) -> bool:
    """Remove the manifest beside a governed dataset, if there is one; returns whether there was.

    :param output: the governed dataset's path (not the manifest's).
    """
    target = manifest_path(output)
    if not target.exists():
        return False
    target.unlink()
    return True


def file_digest(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's bytes, ``sha256:<hex>``, read in chunks.

    :param path: the file.
    """
    digest = hashlib.sha256()
    with Path(path).open("rb") as stream:
        while chunk := stream.read(_READ_CHUNK):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def read_manifest(path: str | os.PathLike[str], *, digest: str, subjects: int | None = None) -> pa.Array:
    """Read a manifest whose digest the run recorded, refusing one that changed or is not a manifest.

    :param path: the manifest file.
    :param digest: the ``sha256:<hex>`` digest its run recorded.
    :param subjects: the number of subjects its run recorded, checked when given.
    :returns: the distinct keyed hashes, as 32-byte binary.
    :raises SubjectManifestError: missing, unreadable, changed since its run, or of the wrong shape.
    """
    source = os.fspath(path)
    try:
        found = file_digest(path)
    except FileNotFoundError:
        raise SubjectManifestError(
            source, "does not exist; it went when its governed set was withdrawn or replaced by a later run"
        ) from None
    except OSError as error:
        raise SubjectManifestError(source, f"cannot be read ({type(error).__name__})") from None
    if found != digest:
        raise SubjectManifestError(
            source,
            f"has digest {found} but its run recorded {digest}: it changed since the run (a later run at the "
            "same output replaces it), so it cannot answer for that run",
        )

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as error:
        raise SubjectManifestError(source, f"is not readable Parquet ({type(error).__name__})") from None
    if table.column_names != [MANIFEST_COLUMN] or table.schema.field(0).type != MANIFEST_TYPE:
        raise SubjectManifestError(
            source, f"is not a manifest: it must have the one column {MANIFEST_COLUMN} of {MANIFEST_TYPE}"
        )
    hashes = table.column(0).combine_chunks()
    if hashes.null_count or len(pc.unique(hashes)) != len(hashes):
        raise SubjectManifestError(source, "is not a manifest: it holds null or repeated hashes")
    if subjects is not None and len(hashes) != subjects:
        raise SubjectManifestError(source, f"holds {len(hashes)} subject(s) but its run recorded {subjects}")
    return hashes
