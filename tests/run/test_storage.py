"""Run folders in object storage, against a real S3 API on loopback (moto's server)."""

from __future__ import annotations

import json
import time

import pyarrow.fs as pafs
import pytest

from autopeft_ray.exceptions import ConfigurationError, RunFolderError
from autopeft_ray.objectives import COMPLETED, EARLY_STOPPED
from autopeft_ray.run import RunFolder, trial_record, write_report
from autopeft_ray.run.storage import Location, is_uri
from autopeft_ray.space import PeftConfiguration
from autopeft_ray.testing.object_store import moto_s3


@pytest.fixture(scope="module")
def s3():
    with moto_s3() as server:
        yield server


@pytest.fixture
def prefix(request) -> str:
    return f"{request.node.name}-{time.time_ns()}"


def _config(sa: int) -> dict:
    return PeftConfiguration(sa, 0, 0, (True, False)).to_dict()


def _record(trial_id: str, score: float, fraction: float, status: str = COMPLETED) -> dict:
    result = {"score": score, "param_fraction": fraction, "fidelity": 4, "target_fidelity": 4}
    return trial_record(trial_id, _config(8), result, status)


# -- locations -------------------------------------------------------------------------------
def test_local_paths_and_uris_name_the_same_folder(tmp_path):
    assert not is_uri(tmp_path) and is_uri("s3://b/p") and is_uri("file:///tmp")
    assert Location(tmp_path / "a" / ".." / "b") == Location(f"file://{tmp_path}/b")
    assert Location(tmp_path).child("x", "y").uri() == str(tmp_path / "x" / "y")


def test_a_uri_keeps_its_options_for_the_folders_under_it(s3):
    run = Location(s3.uri("runs/first"))
    assert not run.is_local and run.name == "first"
    assert run.uri("tune") == s3.uri("runs/first/tune")
    assert run.tune_storage() == {
        "storage_path": f"{s3.bucket}/runs/first",
        "storage_filesystem": run.fs,
    }
    # The same bucket and path is the same run folder, whatever the endpoint.
    plain = Location(f"s3://{s3.bucket}/runs/first?region={s3.region}")
    assert plain == run != Location(s3.uri("runs/other"))


@pytest.mark.parametrize(
    ("uri", "pattern"),
    [
        (
            "foo://bucket/run",
            r"`output` should be a local folder or a URI that pyarrow.fs "
            r"resolves .*got 'foo://bucket/run'. pyarrow says: Unrecognized filesystem type",
        ),
        ("s3:///run", r"got 's3:///run'.*Missing bucket name"),
        ("s3://KEY:hunter2@bucket/run", r"without credentials in it, got 's3://\*\*\*@bucket/run'"),
    ],
)
def test_bad_uris_are_refused_naming_the_field(uri, pattern):
    with pytest.raises(ConfigurationError, match=pattern) as caught:
        Location(uri)
    assert "hunter2" not in str(caught.value)


# -- the run folder in a bucket --------------------------------------------------------------
def test_trial_records_are_whole_objects_read_back_as_one_table(s3, prefix):
    run = RunFolder(s3.uri(prefix))
    run.append_record(_record("a", 0.6, 0.01))
    run.append_record(_record("b", 0.7, 0.02, EARLY_STOPPED))
    run.append_record(_record("b", 0.8, 0.02))  # a resumed trial ends once more
    keys = s3.keys(f"{prefix}/")
    assert len(keys) == 3 and all(k.startswith(f"{prefix}/trials/") for k in keys), keys
    assert not any(k.endswith(".jsonl") for k in keys), "an object store cannot append"
    records = {r["trial_id"]: r for r in run.read_records()}
    assert records["b"]["status"] == COMPLETED and records["b"]["metrics"]["score"] == 0.8
    assert [r["trial_id"] for r in run.completed()] == ["a", "b"]
    run.check_exists()
    run.check_writable()
    assert not any(".autopeft-write-probe" in k for k in s3.keys(prefix)), "the probe is deleted"


def test_a_damaged_trial_object_is_named(s3, prefix):
    run = RunFolder(s3.uri(prefix))
    run.append_record(_record("a", 0.6, 0.01))
    s3.client().put_object(Bucket=s3.bucket, Key=f"{prefix}/trials/b-1.json", Body=b'{"trial')
    with pytest.raises(RunFolderError, match=rf"{prefix}/trials/b-1.json.* is not a trial record"):
        run.read_records()


def test_tables_pareto_adapters_and_report_are_written_to_the_bucket(s3, prefix, tmp_path):
    from autopeft_ray.experiment.search import configurations_from_run

    run = RunFolder(s3.uri(prefix))
    for i, (score, fraction) in enumerate([(0.6, 0.01), (0.7, 0.02), (0.65, 0.03)]):
        run.append_record(_record(f"t{i}", score, fraction))
    pareto = run.read_pareto()  # rebuilt from the records, and written
    assert [r["trial_id"] for r in pareto] == ["t0", "t1"]
    assert {f"{prefix}/{n}" for n in ("trials.csv", "pareto.json", "pareto.csv")} <= set(
        s3.keys(prefix)
    )
    assert len(configurations_from_run(s3.uri(prefix), max_fraction=0.015)) == 1
    configuration = PeftConfiguration.from_dict(_config(8))
    run.write_adapter_setup(0, {"serial": 8}, configuration)
    assert json.loads(s3.read(f"{prefix}/adapters/00/adapter_setup.json")) == {"serial": 8}
    assert (
        PeftConfiguration.from_json(s3.read(f"{prefix}/adapters/00/configuration.json").decode())
        == configuration
    )

    assert write_report(run, reference_point=(0.5, 0.05)) == s3.uri(f"{prefix}/report/report.md")
    report = {k.rsplit("/", 1)[1] for k in s3.keys(f"{prefix}/report/")}
    assert {"report.md", "pareto_front.png", "hypervolume.png"} <= report
    assert b"2 on the Pareto front" in s3.read(f"{prefix}/report/report.md")
    local = write_report(run, reference_point=(0.5, 0.05), report_dir=tmp_path / "rep")
    assert (
        local == str(tmp_path / "rep" / "report.md")
        and (tmp_path / "rep" / "pareto_front.png").exists()
    )


def test_the_python_api_takes_a_pyarrow_filesystem(s3, prefix):
    filesystem = pafs.S3FileSystem(region=s3.region, endpoint_override=s3.endpoint)
    run = RunFolder(f"{s3.bucket}/{prefix}", filesystem)
    run.append_record(_record("a", 0.6, 0.01))
    assert str(run) == f"s3://{s3.bucket}/{prefix}"
    assert [r["trial_id"] for r in RunFolder(s3.uri(prefix)).read_records()] == ["a"]


def test_a_missing_folder_is_no_run_folder(s3, prefix):
    with pytest.raises(ConfigurationError, match=r"`run folder` .* \(this one does not exist\)"):
        RunFolder(s3.uri(prefix)).check_exists()


# -- probes before Ray starts ----------------------------------------------------------------
def test_a_missing_bucket_is_refused_in_one_line(s3):
    with pytest.raises(ConfigurationError) as caught:
        RunFolder(s3.uri("run", bucket="no-such-bucket")).check_writable()
    message = str(caught.value)
    assert message.startswith(
        "`output` should be a folder in a bucket that exists, got 's3://no-such-bucket/run"
    )
    assert "Create the bucket, or fix its name." in message and "\n" not in message


def test_an_unreachable_endpoint_is_refused(s3):
    filesystem = pafs.S3FileSystem(
        region=s3.region,
        endpoint_override="http://127.0.0.1:9",
        connect_timeout=1,
        retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=1),
    )
    with pytest.raises(ConfigurationError, match="should be a reachable object store"):
        RunFolder(f"{s3.bucket}/run", filesystem).check_writable()


def test_bad_credentials_and_missing_permissions_are_refused(s3, prefix):
    reader = s3.user(f"reader-{prefix}"[:60], ["s3:GetObject", "s3:ListBucket"])
    writer = s3.user(
        f"writer-{prefix}"[:60],
        ["s3:GetObject", "s3:ListBucket", "s3:PutObject", "s3:DeleteObject"],
    )

    def folder(credentials: dict[str, str]) -> RunFolder:
        filesystem = pafs.S3FileSystem(
            access_key=credentials["AWS_ACCESS_KEY_ID"],
            secret_key=credentials["AWS_SECRET_ACCESS_KEY"],
            region=s3.region,
            endpoint_override=s3.endpoint,
        )
        return RunFolder(f"{s3.bucket}/{prefix}", filesystem)

    with s3.enforce_auth():
        folder(writer).check_writable()  # a role scoped to the bucket is enough
        with pytest.raises(ConfigurationError, match="a location these credentials may write"):
            folder(reader).check_writable()
        unknown = {"AWS_ACCESS_KEY_ID": "AKIAUNKNOWN", "AWS_SECRET_ACCESS_KEY": "x"}
        with pytest.raises(ConfigurationError, match="a location this machine has credentials for"):
            folder(unknown).check_writable()
        # Reading (report, evaluate, --resume) fails in one line too, naming the run folder;
        # S3 answers a read (HEAD) with unknown credentials with a bare 403, as a denial.
        assert folder(reader).read_records() == []  # reading needs no more than the reader has
        with pytest.raises(
            ConfigurationError, match="`run folder` should be a location these credentials may read"
        ):
            folder(unknown).read_records()


@pytest.fixture
def no_aws_credentials(monkeypatch, tmp_path):
    """Nothing where AWS clients look: no keys in the environment, an empty home, no
    instance metadata (restored after the test, the module's moto keys included)."""
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_CONFIG_FILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


# What pyarrow 26 raises for an unsigned write that the store cannot answer (moto with
# authentication on; real S3 answers a bare 403, ACCESS_DENIED).
INTERNAL_FAILURE = OSError(
    "When initiating multiple part upload for key 'run/x' in bucket 'autopeft-runs': AWS Error "
    "INTERNAL_FAILURE during CreateMultipartUpload operation: "
)


def test_no_credentials_are_named_with_where_they_are_looked_for(no_aws_credentials, monkeypatch):
    from autopeft_ray.run.storage import aws_credential_sources, storage_error

    assert aws_credential_sources() == []
    message = str(storage_error("output", "s3://autopeft-runs/run", INTERNAL_FAILURE, "write"))
    assert "No credentials found" in message and "INTERNAL_FAILURE" in message
    for place in ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", ".aws/credentials", "instance metadata"):
        assert place in message, place
    # A bare 403 without credentials is the same cause; a missing bucket is not.
    denied = OSError("AWS Error ACCESS_DENIED during HeadObject operation: No response body.")
    assert "No credentials found" in str(storage_error("output", "s3://b/r", denied, "read"))
    missing = OSError("AWS Error NO_SUCH_BUCKET during CreateMultipartUpload operation")
    assert "Create the bucket" in str(storage_error("output", "s3://b/r", missing, "write"))
    # With keys in the environment (or a profile file) the message stays as it was.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    assert aws_credential_sources() == ["AWS_ACCESS_KEY_ID"]
    assert "No credentials found" not in str(
        storage_error("output", "s3://autopeft-runs/run", INTERNAL_FAILURE, "write")
    )
    keys = pafs.S3FileSystem(access_key="a", secret_key="b", region="us-west-2")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    assert aws_credential_sources(keys) == ["the filesystem's options"]


def test_a_bucket_without_credentials_says_no_credentials_found(s3, prefix, no_aws_credentials):
    """moto checking signatures, and no credentials anywhere: once a generic
    'INTERNAL_FAILURE'; now the cause and where credentials are looked for."""
    filesystem = pafs.S3FileSystem(
        region=s3.region,
        endpoint_override=s3.endpoint,
        retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=1),
    )
    with s3.enforce_auth(), pytest.raises(ConfigurationError) as caught:
        RunFolder(f"{s3.bucket}/{prefix}", filesystem).check_writable()
    message = str(caught.value)
    assert message.startswith("`output` should be a location this machine has credentials for")
    assert "No credentials found: looked in the environment (AWS_ACCESS_KEY_ID" in message
    assert "\n" not in message
