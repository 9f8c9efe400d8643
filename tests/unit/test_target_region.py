"""Capacity and write gates of the failover's target region, against moto (seeded like the sandbox)."""

from __future__ import annotations

import boto3
import pytest

from dr_automation.target_region import (
    TargetRegionError,
    find_write_gate,
    gates_step,
    restore_capacity,
    restore_write_gate,
    scale_for_serving,
    set_write_gate,
)
from dr_sandbox.aws_seed import _seed_region_compute, standby_capacity


@pytest.fixture
def aws(mocked_aws, estate):
    _seed_region_compute(estate, lambda service, region: boto3.client(service, region_name=region))


def _group(estate, region):
    name = estate.regions[region].capacity["auto_scaling_group"]
    g = boto3.client("autoscaling", region_name=region).describe_auto_scaling_groups(
        AutoScalingGroupNames=[name]
    )["AutoScalingGroups"][0]
    return {k: g[k] for k in ("MinSize", "MaxSize", "DesiredCapacity")}


def test_seeded_standby_regions_run_small_and_refuse_writes(aws, estate):
    assert _group(estate, "us-west-2")["DesiredCapacity"] == standby_capacity(estate, "us-west-2") == 2
    assert _group(estate, "us-east-1")["DesiredCapacity"] == 6
    assert find_write_gate(estate, "us-west-2")["closed"] is True
    assert find_write_gate(estate, "us-east-1")["closed"] is False


def test_scaling_raises_to_serving_size_is_idempotent_and_restores_exactly(aws, estate):
    before = _group(estate, "us-west-2")
    first = scale_for_serving(estate, "us-west-2")
    assert first["changed"] and first["previous"] == before
    assert _group(estate, "us-west-2") == {"MinSize": 6, "MaxSize": 12, "DesiredCapacity": 6}
    again = scale_for_serving(estate, "us-west-2")
    assert again["changed"] is False
    assert restore_capacity(estate, first) is True
    assert _group(estate, "us-west-2") == before
    assert restore_capacity(estate, again) is False


def test_scaling_never_lowers_a_bigger_group(aws, estate):
    name = estate.regions["us-west-2"].capacity["auto_scaling_group"]
    boto3.client("autoscaling", region_name="us-west-2").update_auto_scaling_group(
        AutoScalingGroupName=name, MinSize=8, MaxSize=20, DesiredCapacity=10
    )
    result = scale_for_serving(estate, "us-west-2")
    assert result["changed"] is False and _group(estate, "us-west-2")["DesiredCapacity"] == 10


def test_dry_run_plans_without_changing(aws, estate):
    before = _group(estate, "us-west-2")
    plan = scale_for_serving(estate, "us-west-2", dry_run=True)
    assert plan["planned"] is True and plan["changed"] is False and plan["wanted"]["DesiredCapacity"] == 6
    gates = gates_step(estate, "us-west-2", "us-east-1", True)
    assert gates["opened"]["planned"] and not gates["opened"]["changed"]
    assert _group(estate, "us-west-2") == before
    assert find_write_gate(estate, "us-west-2")["closed"] is True
    assert find_write_gate(estate, "us-east-1")["closed"] is False


def test_gates_open_the_target_close_the_old_region_and_restore_exactly(aws, estate):
    result = gates_step(estate, "us-west-2", "us-east-1", False)
    assert find_write_gate(estate, "us-west-2")["closed"] is False
    closed = find_write_gate(estate, "us-east-1")
    assert closed["closed"] is True
    assert closed["actions"][0]["FixedResponseConfig"]["StatusCode"] == "503"
    assert restore_write_gate(estate, result["closed"]) and restore_write_gate(estate, result["opened"])
    assert find_write_gate(estate, "us-west-2")["closed"] is True
    assert find_write_gate(estate, "us-east-1")["closed"] is False
    assert set_write_gate(estate, "us-east-1", closed=False)["changed"] is False  # idempotent


def test_closing_an_unreachable_old_region_is_recorded_not_fatal(aws, estate):
    lb = estate.regions["us-east-1"].load_balancer["name"]
    elbv2 = boto3.client("elbv2", region_name="us-east-1")
    arn = elbv2.describe_load_balancers(Names=[lb])["LoadBalancers"][0]["LoadBalancerArn"]
    elbv2.delete_load_balancer(LoadBalancerArn=arn)
    result = gates_step(estate, "us-west-2", "us-east-1", False)
    assert result["opened"]["changed"] is True
    assert "not found" in result["closed"]["error"] and result["closed"]["changed"] is False


def test_a_missing_group_or_gate_names_the_config_field(aws, estate):
    name = estate.regions["eu-west-1"].capacity["auto_scaling_group"]
    boto3.client("autoscaling", region_name="eu-west-1").delete_auto_scaling_group(
        AutoScalingGroupName=name, ForceDelete=True
    )
    with pytest.raises(TargetRegionError, match=r"regions\.eu-west-1\.capacity\.auto_scaling_group"):
        scale_for_serving(estate, "eu-west-1")
    gate = find_write_gate(estate, "eu-west-1")
    elbv2 = boto3.client("elbv2", region_name="eu-west-1")
    elbv2.delete_rule(RuleArn=gate["rule_arn"])
    with pytest.raises(TargetRegionError, match=r"regions\.eu-west-1\.load_balancer: .* no write-gate rule"):
        set_write_gate(estate, "eu-west-1", closed=False)
