"""Where a run folder lives: a local folder, or any URI ``pyarrow.fs`` resolves.

Autoscaling clusters in the cloud have no shared disk, so a run folder can be
``s3://bucket/prefix/name``, ``gs://bucket/prefix/name`` or any other URI
that :func:`pyarrow.fs.FileSystem.from_uri` knows, as Ray Tune's
``storage_path`` can. S3 options go in the URI's query, as pyarrow reads them
(``s3://bucket/run?region=us-west-2&endpoint_override=http://127.0.0.1:9000``).
The Python API also takes a :class:`pyarrow.fs.FileSystem` and a path in it,
as Tune's ``storage_filesystem`` does.

Object stores have no append and no rename: every write here is one whole
object (:meth:`Location.write_bytes`); on a local disk it is written to a
temporary file and renamed, so that a reader never sees half of it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import re
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from autopeft_ray.exceptions import ConfigurationError, invalid_value, shorten

#: What a run folder can be, for error messages.
ACCEPTED = (
    "a local folder or a URI that pyarrow.fs resolves (s3://bucket/prefix, gs://bucket/prefix, "
    "file:///path)"
)
#: The object :meth:`Location.check_writable` writes and deletes.
PROBE = ".autopeft-write-probe"


def is_uri(location: str | os.PathLike[str]) -> bool:
    """True for ``scheme://...`` (a ``file://`` URI included), False for a plain path."""
    return "://" in str(location)


class Location:
    """A folder on a ``pyarrow.fs`` filesystem: local, or in object storage.

    Args:
        location: a local path, or a URI (its query, if any, configures the
            filesystem and is kept for the locations under this one).
        filesystem: a filesystem to use as is; ``location`` is then a path in it.

    Raises:
        ConfigurationError: a URI whose scheme or options pyarrow does not know.
    """

    def __init__(
        self,
        location: str | os.PathLike[str] | Location,
        filesystem: pafs.FileSystem | None = None,
        *,
        field: str = "output",
    ) -> None:
        self.fs: pafs.FileSystem
        self.root: str
        self._prefix = ""  # "s3://" before the path in a URI; none for a local path
        self._query = ""  # the URI's "?..." (filesystem options), kept for the children
        if isinstance(location, Location):
            self.fs, self.root = location.fs, location.root
            self._prefix, self._query = location._prefix, location._query
            return
        text = str(location)
        if filesystem is not None:
            self.fs, self.root = filesystem, text.rstrip("/") or "/"
            self._prefix = "" if self.is_local else f"{filesystem.type_name}://"
            if self.is_local:
                self.root = str(Path(self.root).expanduser().resolve())
        elif is_uri(text):
            if "@" in text.split("://", 1)[1].split("/", 1)[0]:
                raise invalid_value(
                    field,
                    _without_secret(text),
                    expected="a URI without credentials in it",
                    fix="They would be saved in search.json and printed in logs: set them in "
                    "the environment (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) or use a role.",
                )
            try:
                self.fs, root = pafs.FileSystem.from_uri(text)
            except (ValueError, OSError, ImportError) as exc:
                raise invalid_value(
                    field,
                    text,
                    expected=ACCEPTED,
                    fix=f"pyarrow says: {shorten(str(exc).splitlines()[0])}.",
                ) from None
            self.root = root.rstrip("/") or "/"
            base, _, query = text.partition("?")
            self._query = f"?{query}" if query else ""
            self._prefix = "" if self.is_local else base.split("://", 1)[0] + "://"
        else:
            if "\0" in text:  # no file system takes it (os.path raises ValueError)
                raise invalid_value(
                    field, text, expected="a path without NUL characters", fix="Pick another path."
                )
            self.fs = pafs.LocalFileSystem()
            self.root = str(Path(text).expanduser().resolve())

    # -- naming --------------------------------------------------------------------
    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    @property
    def name(self) -> str:
        """The last component (a run's name in reports)."""
        return posixpath.basename(self.root.rstrip("/"))

    @property
    def local_path(self) -> Path:
        """The folder on this machine's disk; only for a local location."""
        if not self.is_local:
            raise ConfigurationError(f"{self} is not on this machine's disk.")
        return Path(self.root)

    def uri(self, *names: str) -> str:
        """This location (or a file under it) as a user would write it."""
        path = self.path_of(*names)
        return path if self.is_local else f"{self._prefix}{path}{self._query}"

    def __str__(self) -> str:
        return self.uri()

    def __repr__(self) -> str:
        return f"Location({self.uri()!r})"

    def __eq__(self, other: object) -> bool:
        """The same kind of filesystem and the same path (an S3 endpoint may differ)."""
        return (
            isinstance(other, Location)
            and self.fs.type_name == other.fs.type_name
            and self.root == other.root
        )

    def __hash__(self) -> int:
        return hash((self.fs.type_name, self.root))

    def path_of(self, *names: str) -> str:
        """The path in ``fs`` of a file under this location."""
        return posixpath.join(self.root, *names) if names else self.root

    def child(self, *names: str) -> Location:
        """The location of a folder under this one (same filesystem and options)."""
        child = Location(self)
        child.root = self.path_of(*names)
        return child

    def tune_storage(self) -> dict[str, Any]:
        """``storage_path`` (and ``storage_filesystem``) for Ray Tune's ``RunConfig``/``restore``."""
        if self.is_local:
            return {"storage_path": self.root}
        return {"storage_path": self.root, "storage_filesystem": self.fs}

    # -- reading and writing whole objects ----------------------------------------
    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Object-storage failures (credentials, permissions, network) as one clear line."""
        try:
            yield
        except FileNotFoundError:
            raise
        except OSError as exc:
            if self.is_local:
                raise
            raise storage_error("run folder", self.uri(), exc, action, self.fs) from None

    def exists(self, *names: str) -> bool:
        with self._errors("read"):
            return self.fs.get_file_info(self.path_of(*names)).type != pafs.FileType.NotFound

    def is_file(self, *names: str) -> bool:
        with self._errors("read"):
            return self.fs.get_file_info(self.path_of(*names)).type == pafs.FileType.File

    def read_bytes(self, *names: str) -> bytes:
        with self._errors("read"), self.fs.open_input_stream(self.path_of(*names)) as f:
            return bytes(f.read())

    def read_text(self, *names: str) -> str:
        return self.read_bytes(*names).decode("utf-8")

    def write_bytes(self, data: bytes, *names: str) -> None:
        """Write one whole object: a reader sees the old one or the new one, never a part."""
        path = self.path_of(*names)
        if self.is_local:
            folder = os.path.dirname(path)
            os.makedirs(folder, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            return
        with self._errors("write"), self.fs.open_output_stream(path) as f:
            f.write(data)  # an object store commits the object when it is closed

    def write_text(self, text: str, *names: str) -> None:
        self.write_bytes(text.encode("utf-8"), *names)

    def list_files(self, *names: str) -> list[str]:
        """Names of the files directly in a folder under this location (none if it is missing)."""
        folder = self.path_of(*names)
        selector = pafs.FileSelector(folder, allow_not_found=True)
        with self._errors("read"):
            infos = self.fs.get_file_info(selector)
        return sorted(
            posixpath.basename(info.path) for info in infos if info.type == pafs.FileType.File
        )

    def upload(self, local_folder: str | os.PathLike[str], *names: str) -> None:
        """Copy the files of a local folder (not its subfolders) to a folder here."""
        for path in sorted(Path(local_folder).iterdir()):
            if path.is_file():
                self.write_bytes(path.read_bytes(), *names, path.name)

    # -- checks before Ray starts --------------------------------------------------
    def check_writable(self, field: str = "output") -> None:
        """Raise a one-line error unless this user can write here.

        Local: checked without creating anything. Elsewhere: one marker object
        is written and deleted, so that a missing bucket, missing credentials or
        a missing permission is reported before Ray starts.
        """
        if self.is_local:
            _check_local_writable(Path(self.root), field, self.uri())
            return
        probe = self.path_of(f"{PROBE}-{uuid.uuid4().hex[:8]}")
        try:
            with self.fs.open_output_stream(probe) as f:
                f.write(b"autopeft-ray checks that it can write here\n")
            self.fs.delete_file(probe)
        except OSError as exc:
            raise storage_error(field, self.uri(), exc, "write", self.fs) from None


def _without_secret(uri: str) -> str:
    scheme, rest = uri.split("://", 1)
    return f"{scheme}://***@{rest.split('@', 1)[1]}"


#: Error codes of S3 (pyarrow's "AWS Error CODE") and GCS (gRPC status) -> what was wrong, the fix.
_CREDENTIALS = (
    "a location this machine has credentials for",
    "Set credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or an instance role for s3://, "
    "GOOGLE_APPLICATION_CREDENTIALS or a service account for gs://).",
)
_ERRORS = {
    "NO_SUCH_BUCKET": ("a folder in a bucket that exists", "Create the bucket, or fix its name."),
    "INVALID_ACCESS_KEY_ID": _CREDENTIALS,
    "SIGNATURE_DOES_NOT_MATCH": _CREDENTIALS,
    "MISSING_AUTHENTICATION_TOKEN": _CREDENTIALS,
    "EXPIRED_TOKEN": _CREDENTIALS,
    "UNAUTHENTICATED": _CREDENTIALS,
    # S3 answers a HEAD request (a read) with a bare 403 also for unknown credentials.
    "ACCESS_DENIED": (
        "a location these credentials may {action}",
        "Check that these are the credentials you meant, and grant them read and write on "
        "the bucket (cluster/README.md has a scoped policy).",
    ),
    "NETWORK_CONNECTION": ("a reachable object store", "Check the endpoint and the network."),
    "UNAVAILABLE": ("a reachable object store", "Check the endpoint and the network."),
}
_ERRORS["PERMISSION_DENIED"] = _ERRORS["ACCESS_DENIED"]


#: S3 errors that say something other than "no credentials" even when none were found.
_NOT_ABOUT_CREDENTIALS = ("NO_SUCH_BUCKET", "NETWORK_CONNECTION")
#: Where AWS clients (pyarrow's too) look for credentials, for the message.
_INSTANCE_METADATA = ("169.254.169.254", 80)


def storage_error(
    field: str,
    location: str,
    exc: OSError,
    action: str,
    filesystem: pafs.FileSystem | None = None,
) -> ConfigurationError:
    """One line for a failed read or write of object storage: what went wrong, and the fix.

    An S3 request without credentials goes out unsigned, and the store's answer
    (a bare 403, or moto's ``INTERNAL_FAILURE``) says nothing of why: when no
    credentials can be found where AWS clients look (:func:`aws_credential_sources`),
    the message says so and where they were looked for.
    """
    text = str(exc)
    found = re.search(r"AWS Error ([A-Z_]+)", text) or re.search(
        r"\b(" + "|".join(_ERRORS) + r")\b", text
    )
    code = found.group(1) if found else ""
    expected, fix = _ERRORS.get(
        code, ("a location this user can {action}", "Check the URI and the permissions.")
    )
    if (
        "AWS Error" in text
        and code not in _NOT_ABOUT_CREDENTIALS
        and not aws_credential_sources(filesystem)
    ):
        expected, fix = _CREDENTIALS[0], f"No credentials found: {_where_aws_looks()}."
    first = shorten(text.splitlines()[0] if text else type(exc).__name__, 200)
    return invalid_value(
        field, location, expected=expected.format(action=action), fix=f"{fix} ({first})"
    )


def _check_local_writable(path: Path, field: str, shown: str) -> None:
    """Create the folder and a file in it for real, then remove both: permission bits
    (``os.access`` says yes to root everywhere), read-only or pseudo file systems
    (``/proc``), names too long for the file system all fail here, in one line."""
    try:
        existing = path
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
    except OSError as exc:  # a name too long even to look up
        raise _local_error(field, shown, exc) from None
    if not existing.is_dir():
        raise invalid_value(
            field, shown, expected="a folder", fix=f"{existing} is a file: pick another path."
        )
    created = [p for p in (path, *path.parents) if p.is_relative_to(existing) and p != existing]
    probe = path / f"{PROBE}-{uuid.uuid4().hex[:8]}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"autopeft-ray checks that it can write here\n")
        probe.unlink()
    except OSError as exc:
        raise _local_error(field, shown, exc) from None
    finally:
        for folder in created:  # deepest first: leave no trace of the probe
            with contextlib.suppress(OSError):
                folder.rmdir()


def _local_error(field: str, shown: str, exc: OSError) -> ConfigurationError:
    reason = exc.strerror or type(exc).__name__
    if exc.errno == errno.ENAMETOOLONG:
        fix = "The path or one of its names is too long for the file system: pick a shorter one."
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "Pick a folder this user can write, or fix its permissions."
    else:
        fix = "Pick a folder on a writable disk."
    return invalid_value(
        field, shown, expected="a folder this user can write", fix=f"{fix} ({reason})"
    )


def aws_credential_sources(filesystem: pafs.FileSystem | None = None) -> list[str]:
    """Where credentials for S3 could come from on this machine (empty: none found).

    The places of the AWS default chain, which pyarrow's S3 client follows: keys
    given to the filesystem, the environment, the shared credentials and config
    files, a web identity or container role, and the instance metadata (probed
    for a second, unless ``AWS_EC2_METADATA_DISABLED`` is true).
    """
    found = []
    try:  # an S3FileSystem pickles its options: keys given to it, or anonymous access
        options = filesystem.__reduce__()[1][0] if filesystem is not None else {}
    except (AttributeError, IndexError, TypeError):
        options = {}
    if isinstance(options, dict) and (options.get("access_key") or options.get("anonymous")):
        found.append("the filesystem's options")
    if os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY"):
        found.append("AWS_ACCESS_KEY_ID")
    found += [
        name
        for name in (
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        )
        if os.environ.get(name)
    ]
    found += [str(path) for path in _aws_files() if path.is_file()]
    if not found and os.environ.get("AWS_EC2_METADATA_DISABLED", "").lower() != "true":
        from autopeft_ray.network import can_connect

        if can_connect(*_INSTANCE_METADATA, timeout=1.0):
            found.append("the instance metadata")
    return found


def _aws_files() -> list[Path]:
    """The shared credentials and config files (``~/.aws/credentials``, ``~/.aws/config``)."""
    return [
        Path(os.environ.get(variable) or Path.home() / ".aws" / name).expanduser()
        for variable, name in (
            ("AWS_SHARED_CREDENTIALS_FILE", "credentials"),
            ("AWS_CONFIG_FILE", "config"),
        )
    ]


def _where_aws_looks() -> str:
    credentials, config = _aws_files()
    profile = os.environ.get("AWS_PROFILE") or "default"
    return (
        f"looked in the environment (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
        f"AWS_WEB_IDENTITY_TOKEN_FILE), in {credentials} and {config} (profile {profile!r}, "
        f"AWS_PROFILE picks another) and in the instance metadata (an instance role). Set "
        f"AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, write the profile, or run where a role "
        f"gives them"
    )
