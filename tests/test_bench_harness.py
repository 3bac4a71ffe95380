"""The benchmark harness's own logic (no timing assertions: figures are measured by ``python -m bench``).

Prowler output samples under ``bench/testdata/`` are real ``prowler aws`` 5.46.0 output captured from a
run against the seeded moto estate.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bench import parse as parse_bench
from bench.common import (
    RatioRow,
    last_json_line,
    ratio,
    ratio_table,
    run_measured,
    summarize,
)
from bench.prowler import (
    Explanation,
    MapEntry,
    ProwlerResult,
    diff_verdicts,
    load_map,
    our_verdicts,
    parse_csv,
    parse_ocsf,
    prowler_log_errors,
    prowler_phase_times,
    prowler_verdicts,
    resource_key,
)
from bench.scale import c7n_policy_file
from bench.scale_estate import spec_for

TESTDATA = Path(__file__).resolve().parents[1] / "bench" / "testdata"
EXPECTED = [
    ("cloudtrail_kms_encryption_enabled", "arn:aws:cloudtrail:us-east-1:123456789012:trail/rb-account-trail", "FAIL"),
    ("s3_bucket_public_access", "arn:aws:s3:::rb-prod-public-website", "FAIL"),
    ("iam_password_policy_minimum_length_14", "arn:aws:iam:us-east-1:123456789012:password-policy", "FAIL"),
    ("ec2_ebs_snapshots_encrypted", "arn:aws:ec2:us-east-1:123456789012:snapshot/snap-fd8b1ac7b9ac42860", "PASS"),
]


def test_parse_real_prowler_ocsf_output() -> None:
    results = parse_ocsf((TESTDATA / "prowler-5.46.0-sample.ocsf.json").read_text())
    assert [(r.check_id, r.resource_uid, r.status) for r in results] == EXPECTED
    assert {r.region for r in results} == {"us-east-1"}
    assert {r.account for r in results} == {"123456789012"}
    assert all(r.detail for r in results)


def test_parse_real_prowler_csv_output_matches_ocsf() -> None:
    ocsf = parse_ocsf((TESTDATA / "prowler-5.46.0-sample.ocsf.json").read_text())
    rows = parse_csv((TESTDATA / "prowler-5.46.0-sample.csv").read_text())
    assert [(r.check_id, r.resource_uid, r.status, r.region, r.account) for r in rows] == [
        (r.check_id, r.resource_uid, r.status, r.region, r.account) for r in ocsf
    ]


def test_empty_prowler_output_parses_to_nothing() -> None:
    assert parse_ocsf("") == []
    assert parse_ocsf("[]") == []


def test_prowler_log_phases_and_errors() -> None:
    lines = [
        '{"timestamp": "2026-11-29 00:18:20,866", "level": "INFO", "message": "Initializing AWS provider ..."}',
        '{"timestamp": "2026-11-29 00:18:55,216", "level": "ERROR", "message": "us-east-1 -- KeyError:61 -- \'MultiRegion\'"}',
        '{"timestamp": "2026-11-29 00:18:56,216", "level": "ERROR", "message": "us-east-1 -- KeyError:61 -- \'MultiRegion\'"}',
        "not json",
        '{"timestamp": "2026-11-29 01:09:03,000", "level": "ERROR", "message": "us-east-1 -- ResponseParserError[1076]: '
        'Unable to parse response, invalid XML received:',
        '<html>404</html>"}',
        # Prowler does not escape quotes inside messages: this line is not valid JSON.
        '{"timestamp": "2026-11-29 01:09:02,754", "filename": "s3_service.py:622", "level": "ERROR", '
        '"module": "s3_service", "message": "us-east-1 -- EndpointConnectionError[600]: Could not connect to '
        'the endpoint URL: "http://123456789012.127.0.0.1:37957/v20180820/configuration/publicAccessBlock""}',
        '{"timestamp": "2026-11-29 00:19:29,491", "level": "INFO", "message": "Extracting audit statistics..."}',
    ]
    log = "\n".join(lines)
    start, end = prowler_phase_times(log) or (0.0, 0.0)
    assert end - start == pytest.approx(68.625)
    errors = prowler_log_errors(log)
    assert errors[0] == "us-east-1 -- KeyError:61 -- 'MultiRegion'"
    assert len(errors) == 3
    assert errors[1].startswith("us-east-1 -- ResponseParserError[1076]")  # a message spanning two lines
    assert "123456789012.127.0.0.1" in errors[2]  # a quote inside the message: not valid JSON
    assert prowler_phase_times('{"timestamp": "2026-11-29 00:18:20,866", "level": "INFO", "message": "x"}') is None


def test_resource_key_drops_region_and_account() -> None:
    # Our snapshot ARNs carry no account; Prowler's do: both must pair.
    assert resource_key("arn:aws:ec2:us-east-1::snapshot/snap-1") == resource_key(
        "arn:aws:ec2:us-east-1:123456789012:snapshot/snap-1"
    )
    assert resource_key("arn:aws:s3:::bucket-a") == "s3:bucket-a"
    assert resource_key("not-an-arn") == "not-an-arn"


def _finding(rule: str, resource: str, status: str, region: str = "us-east-1") -> dict[str, str]:
    return {"rule_id": rule, "resource_id": resource, "status": status, "region": region,
            "account": "123456789012", "detail": f"{rule} {status}"}


def test_verdict_diff_pairs_resources_accounts_and_regions() -> None:
    entries = [
        MapEntry("our_enc", ("s3_bucket_default_encryption",), "resource"),
        MapEntry("our_root_mfa", ("iam_root_mfa_enabled",), "account"),
        MapEntry("our_ebs_default", ("ec2_ebs_default_encryption",), "region"),
        MapEntry("our_unused", ("iam_user_accesskey_unused", "iam_user_console_access_unused"), "resource",
                 note="thresholds differ"),
    ]
    ours = [
        _finding("our_enc", "arn:aws:s3:::a", "pass", "us-east-1"),
        _finding("our_enc", "arn:aws:s3:::b", "fail", "us-east-1"),
        _finding("our_enc", "arn:aws:s3:::eu", "fail", "eu-west-1"),  # outside Prowler's region
        _finding("our_root_mfa", "arn:aws:iam::123456789012:root", "fail", "global"),
        _finding("our_ebs_default", "arn:aws:ec2:us-east-1:123456789012:ebs-default-encryption", "fail"),
        _finding("our_unused", "arn:aws:iam::123456789012:user/u", "pass", "global"),
    ]
    prowler = [
        ProwlerResult(check_id="s3_bucket_default_encryption", resource_uid="arn:aws:s3:::a", status="PASS",
             region="us-east-1", account="123456789012", detail="ok"),
        ProwlerResult(check_id="s3_bucket_default_encryption", resource_uid="arn:aws:s3:::b", status="PASS",
             region="us-east-1", account="123456789012", detail="ok"),
        ProwlerResult(check_id="ec2_ebs_default_encryption", resource_uid="arn:aws:ec2:us-east-1:123456789012:volume",
             status="FAIL", region="us-east-1", account="123456789012", detail="off"),
        # Two checks map to one rule: FAIL wins.
        ProwlerResult(check_id="iam_user_accesskey_unused", resource_uid="arn:aws:iam::123456789012:user/u", status="PASS",
             region="us-east-1", account="123456789012", detail="ok"),
        ProwlerResult(check_id="iam_user_console_access_unused", resource_uid="arn:aws:iam::123456789012:user/u",
             status="FAIL", region="us-east-1", account="123456789012", detail="stale"),
        ProwlerResult(check_id="not_mapped", resource_uid="x", status="FAIL", region="us-east-1", account="1", detail=""),
    ]
    mine, out_of_scope = our_verdicts(ours, entries)
    theirs = prowler_verdicts(prowler, entries)
    explanations = [Explanation("our_root_mfa", "*", "fail", "none", "moto has no root row")]
    rows, counts = diff_verdicts(mine, theirs, entries, explanations)

    assert out_of_scope == 1
    assert counts["our_enc"] == {"agree": 1, "differ": 1, "only_ours": 0, "only_prowler": 0}
    assert counts["our_ebs_default"]["agree"] == 1  # paired by region despite different resource ids
    by_rule = {r.rule: r for r in rows}
    assert set(by_rule) == {"our_enc", "our_root_mfa", "our_unused"}
    assert (by_rule["our_enc"].ours, by_rule["our_enc"].prowler) == ("fail", "PASS")
    assert by_rule["our_enc"].explanation == "UNEXPLAINED"
    assert (by_rule["our_root_mfa"].ours, by_rule["our_root_mfa"].prowler) == ("fail", "none")
    assert by_rule["our_root_mfa"].explanation == "moto has no root row"
    assert (by_rule["our_unused"].ours, by_rule["our_unused"].prowler) == ("pass", "FAIL")
    assert by_rule["our_unused"].explanation == "thresholds differ"


def test_prowler_map_names_only_registered_rules() -> None:
    from include.compliance.registry import rule_ids

    entries, explanations = load_map()
    known = set(rule_ids())
    assert entries, "the map is empty"
    assert {e.rule for e in entries} <= known
    assert {x.rule for x in explanations} - {"*"} <= {e.rule for e in entries}
    for entry in entries:
        assert entry.prowler and all(check.replace("_", "").isalnum() for check in entry.prowler)


def test_ratio_and_table() -> None:
    assert ratio(2.0, 4.0) == 0.5
    assert ratio(1.0, 0.0) is None
    row = RatioRow("wall", 3.0, 6.0, "s", (2.5, 3.5), (6.0, 6.0))
    assert row.ratio == 0.5
    table = ratio_table([row, RatioRow("count", 10, None, "")], ours="ours", peer="c7n")
    lines = table.splitlines()
    assert lines[0] == "| measure | ours | c7n | ratio ours/c7n | note |"
    assert lines[2] == "| wall | 3.000 [2.500-3.500] s | 6.000 s | 0.50 |  |"
    assert lines[3] == "| count | 10 | - | - |  |"
    assert summarize([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3}


def test_parse_summary_ratios_to_empty_dag() -> None:
    def run(file: str, total: float) -> dict[str, object]:
        return {"file": file, "total_s": total, "pre_import_s": 0.0, "parse_s": total, "serialize_s": 0.0,
                "fork_to_exit_s": total, "rss_growth": 0, "dags": ["d"], "import_errors": {}}

    rows = parse_bench.summarize_runs(
        [run("/e.py", 0.2), run("/e.py", 0.4), run("/e.py", 0.3), run("/x.py", 0.9), run("/x.py", 0.6)], "/e.py"
    )
    assert rows[0]["is_peer"] and rows[0]["ratio_to_empty"] == pytest.approx(1.0)
    assert rows[1]["total_s"]["median"] == pytest.approx(0.75)
    assert rows[1]["ratio_to_empty"] == pytest.approx(2.5)


def test_dag_files_are_the_dag_processor_candidates(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("from airflow.sdk import dag\n")
    (tmp_path / "helper.py").write_text("x = 1\n")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "a.py").write_text("airflow dag")
    assert [p.name for p in parse_bench.dag_files(tmp_path)] == ["a.py"]


def test_scale_spec_adds_up() -> None:
    spec = spec_for(10_000)
    assert spec.total == 10_000
    assert spec.buckets == 4000 and spec.instances == 2500
    with pytest.raises(ValueError):
        spec_for(10)


def test_custodian_policies_are_filterless_but_own_snapshots_only(tmp_path: Path) -> None:
    import yaml

    policies = yaml.safe_load(c7n_policy_file(tmp_path, "123456789012").read_text())["policies"]
    assert {p["resource"] for p in policies} == {"aws.s3", "aws.ec2", "aws.ebs", "aws.ebs-snapshot",
                                                 "aws.security-group"}
    assert all("filters" not in p for p in policies)
    snapshots = next(p for p in policies if p["resource"] == "aws.ebs-snapshot")
    assert snapshots["query"] == [{"owner-id": "123456789012"}]


def test_run_measured_reports_peak_memory_of_the_child() -> None:
    code = "x = bytearray(64 * 1024 * 1024)\nfor i in range(0, len(x), 4096): x[i] = 1\nprint('{\"ok\": 1}')"
    measured = run_measured([sys.executable, "-c", code])
    assert measured.ok
    assert measured.peak_rss >= 64 * 1024 * 1024
    assert last_json_line(measured.stdout) == {"ok": 1}


# ---- bench/backup.py ---------------------------------------------------------------------------------------
#: rclone 1.60.1's closing ``--stats`` block (``--stats 1h --stats-log-level NOTICE``), copied from real runs:
#: a copy of two new files next to one unchanged, and a no-change sync.
RCLONE_COPY_STATS = """2026/11/30 09:26:04 NOTICE: \nTransferred:   \t          4 B / 4 B, 100%, 0 B/s, ETA -
Checks:                 1 / 1, 100%
Transferred:            2 / 2, 100%
Elapsed time:         0.1s
"""
RCLONE_NOCHANGE_STATS = """2026/11/30 09:26:04 NOTICE: \nTransferred:   \t          0 B / 0 B, -, 0 B/s, ETA -
Checks:                 3 / 3, 100%
Elapsed time:         0.0s
"""


def test_backup_bench_sizes_default_to_the_issue_and_scale_down_by_environment() -> None:
    from bench.backup import MIB, Sizes
    from bench.common import BenchError

    full = Sizes.from_env({})
    assert full.sets() == {"small": (2000, 64 * 1024), "large": (10, 64 * MIB)}
    assert (full.nochange_count, full.huge_size, full.dests) == (10_000, 1024 * MIB, ("gcs", "azure"))
    small = Sizes.from_env({"BENCH_BACKUP_SMALL": "200", "BENCH_BACKUP_NOCHANGE": "1000",
                            "BENCH_BACKUP_HUGE_MIB": "256", "BENCH_BACKUP_DESTS": "azure",
                            "BENCH_BACKUP_PARTS": "nochange, drill"})
    assert small.sets()["small"] == (200, 64 * 1024) and small.sets()["large"] == full.sets()["large"]
    assert (small.nochange_count, small.huge_size, small.dests, small.parts) == (
        1000, 256 * MIB, ("azure",), ("nochange", "drill"))
    with pytest.raises(BenchError, match="BENCH_BACKUP_SMALL must be a positive integer"):
        Sizes.from_env({"BENCH_BACKUP_SMALL": "0"})
    with pytest.raises(BenchError, match="BENCH_BACKUP_DESTS: unknown s3"):
        Sizes.from_env({"BENCH_BACKUP_DESTS": "gcs,s3"})


def test_backup_bench_throughput_and_rclone_stats() -> None:
    from bench.backup import mb_per_s, rclone_counts

    assert mb_per_s(64 * 1024 * 1024, 2.0) == pytest.approx(33.554432)
    with pytest.raises(ValueError):
        mb_per_s(1, 0.0)
    assert rclone_counts(RCLONE_COPY_STATS) == {"transferred": 2, "checks": 1, "errors": 0}
    assert rclone_counts(RCLONE_NOCHANGE_STATS) == {"transferred": 0, "checks": 3, "errors": 0}
    assert rclone_counts("Errors:                 4 (retrying may help)\n")["errors"] == 4


def test_backup_bench_rclone_environment_reaches_only_the_emulators() -> None:
    from bench.backup import rclone_env

    env = rclone_env({"PATH": "/usr/bin", "AWS_CA_BUNDLE": "/etc/ca.pem", "AWS_PROFILE": "prod",
                      "RCLONE_CONFIG_PROD_TYPE": "s3", "AIRFLOW_CONN_AWS_ESTATE": "{}"},
                     s3_endpoint="http://127.0.0.1:1", gcs_endpoint="http://127.0.0.1:2/",
                     azure_sas_url="http://127.0.0.1:3/devstoreaccount1?sv=x")
    assert env["PATH"] == "/usr/bin" and env["RCLONE_CONFIG"] == "/dev/null"
    assert not {"AWS_CA_BUNDLE", "AWS_PROFILE", "RCLONE_CONFIG_PROD_TYPE", "AIRFLOW_CONN_AWS_ESTATE"} & set(env)
    assert (env["RCLONE_CONFIG_S3_ENDPOINT"], env["RCLONE_CONFIG_S3_ENV_AUTH"]) == ("http://127.0.0.1:1", "false")
    assert env["RCLONE_CONFIG_GCS_ENDPOINT"] == "http://127.0.0.1:2/storage/v1/"
    assert env["RCLONE_CONFIG_GCS_ANONYMOUS"] == "true"
    assert env["RCLONE_CONFIG_AZ_SAS_URL"] == "http://127.0.0.1:3/devstoreaccount1?sv=x"


def test_backup_bench_policy_is_a_valid_backup_policy() -> None:
    from bench.backup import policy_document
    from include.backup.policies import BackupPolicy

    policy = BackupPolicy.model_validate(policy_document(
        "bench-small", ("aws-prod", "rb-bench-source", "small/"), ("gcp-prod", "rb-bench-small-ours-1", "backup/"), 8))
    assert (policy.source.prefix, policy.destination.container, policy.concurrency) == (
        "small/", "rb-bench-small-ours-1", 8)


def test_backup_bench_results_of_two_runs_merge_part_by_part() -> None:
    from bench.backup import merge_results

    first = {"machine": {"date": "d1"}, "sizes": {"repeats": 3}, "rclone": "v1", "nochange": {"n": 1},
             "drill": {"d": 1}, "errors": {"throughput": "Azurite stalled"}}
    second = {"machine": {"date": "d2"}, "sizes": {"repeats": 2}, "rclone": "v1", "throughput": {"t": 2}}
    merged = merge_results([first, second])
    assert (merged["nochange"], merged["drill"], merged["throughput"]) == ({"n": 1}, {"d": 1}, {"t": 2})
    assert "errors" not in merged  # the failed part was measured again
    assert [(r["machine"]["date"], r["parts"]) for r in merged["runs"]] == [
        ("d1", ["nochange", "drill"]), ("d2", ["throughput"])]
    assert merge_results([first])["errors"] == {"throughput": "Azurite stalled"}
