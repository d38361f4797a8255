"""``FeedService.GetExperimentResults``: one RPC, one experiment phase's results.

Where it runs (docs/DECISIONS.md, "Experiments"): the experiment definitions (arms,
shares, control) and the statistics are svc_rank's; the exposures and outcomes live
in ClickHouse, which only svc_stream opens (chDB: one process per path). So the work
is split at the narrowest point:

1. svc_stream's internal ``StreamService.GetExperimentData(experiment_id, phase)``
   runs :data:`~svc_rank.experiments.warehouse.PER_USER_SQL` and answers one value per
   exposed user and column, grouped by arm (packed: about 20 bytes per user, so a
   phase of ~200k exposed users fits gRPC's default 4 MB message);
2. svc_rank turns those columns into :class:`~svc_rank.experiments.stats.ArmData`,
   runs :func:`~svc_rank.experiments.stats.analyze` against the *running* phase's
   configured shares and control, and answers the typed results.

Pure parts: :func:`arm_data_of` and :func:`to_proto`. :class:`ResultsService` is
the I/O part.
"""

from __future__ import annotations

import grpc
from reels.v1 import rank_pb2, stream_pb2, stream_pb2_grpc

from reels import errors
from svc_rank.experiments.model import Experiment
from svc_rank.experiments.serving import Experiments
from svc_rank.experiments.stats import ArmData, Results, analyze


def arm_data_of(reply: stream_pb2.GetExperimentDataResponse) -> dict[str, ArmData]:
    """Arm -> its exposed users' columns, as :func:`analyze` takes them."""
    return {
        a.arm: ArmData.of(
            list(a.impressions),
            list(a.watch_seconds),
            list(a.completions),
            list(a.likes),
            list(a.pre_watch_seconds),
        )
        for a in reply.arms
    }


def to_proto(experiment: Experiment, results: Results) -> rank_pb2.GetExperimentResultsResponse:
    """The RPC's answer for ``results`` of ``experiment``'s phase."""
    arms = []
    for a in results.arms:
        metrics = []
        for name, value in a.values.items():
            metric = rank_pb2.ArmMetric(name=name, value=value)
            c = a.vs_control.get(name)
            if c is not None:
                lo, hi = c.relative_ci
                metric.vs_control.CopyFrom(
                    rank_pb2.MetricComparison(
                        treatment_mean=c.treatment_mean,
                        control_mean=c.control_mean,
                        diff=c.diff,
                        ci_low=c.ci_low,
                        ci_high=c.ci_high,
                        se=c.se,
                        df=c.df,
                        p_value=c.p_value,
                        significant=c.significant,
                        relative=c.relative,
                        relative_ci_low=lo,
                        relative_ci_high=hi,
                    )
                )
            metrics.append(metric)
        arms.append(
            rank_pb2.ExperimentArmResult(
                name=a.name, exposures=a.exposures, share_bp=a.share_bp, metrics=metrics
            )
        )
    srm = results.srm
    return rank_pb2.GetExperimentResultsResponse(
        experiment_id=experiment.experiment_id,
        phase=experiment.phase,
        salt=experiment.salt,
        control=results.control,
        level=results.level,
        arms=arms,
        srm=rank_pb2.SampleRatioCheck(
            chi2=srm.chi2,
            df=srm.df,
            p_value=srm.p_value,
            threshold=srm.threshold,
            flagged=srm.flagged,
            expected=srm.expected,
        ),
        cuped=results.cuped,
        cuped_theta=results.cuped_theta,
        variance_reduction=results.variance_reduction,
    )


class ResultsService:
    """Answers GetExperimentResults from svc_stream's per-user data of a running phase."""

    def __init__(
        self,
        experiments: Experiments,
        stub: stream_pb2_grpc.StreamServiceStub,
        *,
        timeout_s: float = 30.0,
    ) -> None:
        self.experiments = experiments
        self.stub = stub
        self.timeout_s = timeout_s

    async def results(
        self, request: rank_pb2.GetExperimentResultsRequest
    ) -> rank_pb2.GetExperimentResultsResponse:
        if not request.experiment_id:
            raise errors.InvalidArgument(
                "experiment_id is required", [("experiment_id", "must be set")]
            )
        try:
            experiment = self.experiments.get(request.experiment_id)
        except KeyError:
            raise errors.NotFound("experiment", request.experiment_id) from None
        try:
            reply = await self.stub.GetExperimentData(
                stream_pb2.GetExperimentDataRequest(
                    experiment_id=experiment.experiment_id, phase=experiment.phase
                ),
                timeout=self.timeout_s,
            )
        except grpc.aio.AioRpcError as exc:
            raise errors.Unavailable(
                f"experiment data unavailable ({exc.code().name}), retry shortly", 5.0
            ) from exc
        data = arm_data_of(reply)
        results = analyze(
            experiment.shares,
            experiment.control,
            {arm: d for arm, d in data.items() if arm in experiment.shares},
            use_cuped=request.cuped,
        )
        return to_proto(experiment, results)
