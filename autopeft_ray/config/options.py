"""Everything a search takes (``autopeft-ray search``), validated before Ray starts.

Each field's default and help live on the field; the CLI is built from them
(:mod:`.fields`). The names of searchers, schedulers and surrogates are
defined here once: the searchers and the CLI read them from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from autopeft_ray.builder.presets import BASELINE_NAMES
from autopeft_ray.exceptions import ConfigurationError, invalid_value
from autopeft_ray.space import VARIANTS, SearchSpace
from autopeft_ray.validation import check_int, check_reference_point, check_trial_resources

from .fields import option
from .settings import TrainingSettings

SEARCHERS = ("autopeft", "random", "ax")
SCHEDULERS = ("fifo", "asha", "hyperband")
#: Score models of the autopeft and ax searchers: the paper's fully Bayesian SAAS GP
#: (NUTS), or its MAP fit (cheap at hundreds of observations).
SURROGATES = ("saas-nuts", "saas-map")
#: The NUTS budget of the fully Bayesian SAAS fit, (warmup steps, samples, thinning):
#: the paper's. The default of ``--nuts``, of the searchers' ``nuts_*`` arguments and
#: of ``NutsSettings``.
PAPER_NUTS = (128, 64, 4)


def check_searcher_flags(
    *, surrogate: str, background: bool, fill_with_random: bool, multi_fidelity: bool
) -> None:
    """The rules between the autopeft searcher's flags, for ``SearchOptions`` and the
    searcher alike (field names in backticks: the CLI shows them as its flags)."""
    if fill_with_random and not background:
        raise invalid_value(
            "fill_with_random",
            fill_with_random,
            valid=[False],
            fix="`fill_with_random` fills free slots while the background thread fits; "
            "without `background` there is none. Set `background` too.",
        )
    if multi_fidelity and surrogate != "saas-map":
        raise invalid_value(
            "surrogate",
            surrogate,
            valid=["saas-map"],
            fix="`multi_fidelity` fits a MAP model of the score over configuration and "
            "fidelity. Set `surrogate` to 'saas-map'.",
        )


#: The fields that say where and how many trials run (search, evaluate, transfer).
RESOURCE_FIELDS = (
    "concurrency",
    "cpus_per_trial",
    "gpus_per_trial",
    "address",
    "max_failures",
    "reuse_actors",
)

#: The default initial design, sized as Ax sizes its Sobol step
#: (``ax.generation_strategy.dispatch_utils.calculate_num_initialization_trials``):
#: this many random configurations per searched dimension, ...
INITIAL_PER_DIMENSION = 2
#: ... at most this share of the trials (a fifth: Ax's), ...
INITIAL_SHARE_OF_TRIALS = 1 / 5
#: ... of this many trials when the searcher is not told the budget (Ray Tune tells
#: it only through ``search_callbacks`` or a ``param_space``), ...
ASSUMED_TRIALS = 50
#: ... and at least this many (Ax's floor).
MIN_INITIAL = 5


def initial_design_size(space: SearchSpace, num_trials: int | None = None) -> int:
    """The number of random configurations before the model, when none is given.

    Twice the space's searched dimensions, at most a fifth of ``num_trials``
    (:data:`ASSUMED_TRIALS` when unknown), at least 5: the rule Ax applies to
    its Sobol step. The one definition of ``num_initial=None``, for the
    searchers and for ``autopeft-ray search`` without ``--initial``.

    Args:
        space: the (possibly narrowed) search space.
        num_trials: the search's budget of trials (Tune's ``num_samples``), if known.

    Returns:
        The size of the initial design.

    Example:
        >>> initial_design_size(SearchSpace(num_layers=6, hidden_size=384))  # 9 dimensions
        10
        >>> initial_design_size(SearchSpace(num_layers=6, hidden_size=384), num_trials=12)
        5
    """
    budget = ASSUMED_TRIALS if num_trials is None else check_int("num_trials", num_trials)
    scaled = INITIAL_PER_DIMENSION * len(space.dimensions)
    return max(MIN_INITIAL, min(scaled, int(budget * INITIAL_SHARE_OF_TRIALS)))


@dataclass(frozen=True)
class SearchOptions:
    """Everything ``autopeft-ray search`` takes.

    ``settings`` says how each configuration is trained at the search
    fidelity; every other field's help says what it does (``autopeft-ray
    search --help`` shows the same text).
    """

    settings: TrainingSettings = option(
        default_factory=TrainingSettings, help="how each configuration is trained", cli=False
    )
    output: str = option(
        "autopeft_runs/search",
        help="run folder: a local path or a URI (s3://bucket/prefix/name, gs://...)",
    )
    variant: str = option(
        "full",
        help="the paper's space (full: serial and parallel adapters, prefix, layers), one of its "
        "ablations (sa, sa-layer, sa-pa-layer), full-lora (full plus a LoRA rank), or LoRA "
        "alone (lora, lora-layer)",
        flag="--space",
        choices=VARIANTS,
    )
    searcher: str = option(
        "autopeft",
        help="autopeft (SAAS GP + qLogNEHVI), random (the paper's baseline), or ax (the "
        "same search through Ax's Client: slower, Ax-native)",
        choices=SEARCHERS,
    )
    num_initial: int | None = option(
        None,
        help="random initial configurations before the model; unset: twice the searched "
        f"dimensions, from {MIN_INITIAL} to {int(ASSUMED_TRIALS * INITIAL_SHARE_OF_TRIALS)} "
        "(the full space of a 6-layer model: 10; the paper: 100)",
        flag="--initial",
    )
    num_model_based: int = option(100, help="model-based (BO) configurations", flag="--model-based")
    concurrency: int = option(1, help="trials in flight")
    scheduler: str = option(
        "fifo",
        help="fifo, or multi-objective early stopping (asha, hyperband)",
        choices=SCHEDULERS,
    )
    cpus_per_trial: float = option(2.0, help="CPUs of each trial")
    gpus_per_trial: float = option(0.0, help="GPUs of each trial; fractions allowed, e.g. 0.5")
    address: str | None = option(None, help="Ray cluster address (default: start Ray locally)")
    nuts: tuple[int, int, int] = option(
        PAPER_NUTS,
        help="NUTS warmup steps, samples and thinning of the SAAS fit (paper: 128 64 4)",
        metavar=("WARMUP", "SAMPLES", "THINNING"),
    )
    surrogate: str | None = option(
        None,
        help="score model: fully Bayesian SAAS (paper) or MAP SAAS (cheap at many "
        "observations) (default: saas-map with the autopeft searcher and --scheduler asha or "
        "hyperband, for --multi-fidelity; else saas-nuts)",
        choices=SURROGATES,
    )
    background: bool = option(
        False,
        help="fit and optimise the autopeft searcher's model in a background thread, so "
        "that suggestions never hold Ray Tune's event loop; each fit queues a candidate per "
        "trial slot (--concurrency, at least 2); model-based suggestions then depend on "
        "when results arrive, not only on the seed",
        flag="--background-suggestions",
    )
    fill_with_random: bool = option(
        False,
        help="with --background-suggestions: a free trial slot that finds no model-based "
        "configuration ready starts a random one instead of waiting (no slot idles while "
        "the model fits; fewer model-based trials)",
        flag="--fill-with-random",
    )
    multi_fidelity: bool | None = option(
        None,
        help="autopeft searcher with --scheduler asha or hyperband and --surrogate saas-map: "
        "also fit trials stopped at a low rung and every rung each trial reported, with the "
        "fidelity as a model input, and choose the next configuration for the full budget "
        "(default: on with the autopeft searcher, --scheduler asha or hyperband and the MAP "
        "surrogate; on real trainings it ranks unseen configurations at full fidelity far "
        "better than a model of the full trainings alone: BENCHMARKS.md)",
        flag="--multi-fidelity",
    )
    cost_input: bool | None = option(
        None,
        help="autopeft searcher: give the score model each configuration's parameter fraction "
        "as one more input, so that it learns how the score grows with capacity from few "
        "results (default: on with --multi-fidelity, the combination measured; else off; "
        "BENCHMARKS.md)",
        flag="--cost-input",
    )
    max_baseline: int | None = option(
        None,
        help="autopeft searcher: keep at most this many observed configurations, the likeliest "
        "to be Pareto-optimal, in the acquisition (e.g. 32 at hundreds of observations; "
        "BENCHMARKS.md gives the saving); unset: all",
    )
    reference_point: tuple[float, float] | None = option(
        None,
        help="hypervolume reference (score, fraction); unset: score 0 and the largest "
        "configuration's fraction",
        metavar=("SCORE", "FRACTION"),
    )
    max_failures: int = option(1, help="retries of a failed trial (node loss)")
    reuse_actors: bool = option(
        True,
        help="start each trial in the Ray actor of an ended one (Ray Tune's reuse_actors), "
        "so a trial does not pay a fresh worker's start and imports; "
        "--no-reuse-actors starts a fresh actor per trial",
    )
    seed: int = option(0, help="the searcher's seed (the CLI's --seed sets it)", cli=False)
    baselines: tuple[str, ...] = option(
        (),
        help="also train this baseline at the search fidelity, shown beside the front "
        "in the report (repeatable)",
        flag="--baseline",
        choices=BASELINE_NAMES,
        append=True,
    )

    def __post_init__(self) -> None:
        if not isinstance(self.settings, TrainingSettings):
            raise invalid_value(
                "settings", type(self.settings).__name__, expected="a TrainingSettings"
            )
        self._resolve_scheduler_defaults()
        for name, valid in (
            ("variant", VARIANTS),
            ("searcher", SEARCHERS),
            ("scheduler", SCHEDULERS),
            ("surrogate", SURROGATES),
        ):
            if getattr(self, name) not in valid:
                raise invalid_value(name, getattr(self, name), valid=valid)
        for name in ("num_initial", "num_model_based", "max_failures", "seed"):
            if name != "num_initial" or self.num_initial is not None:
                check_int(name, getattr(self, name), minimum=0)
        if self.num_initial == 0 and self.num_model_based < 1:
            raise invalid_value(
                "num_initial", self.num_initial, expected="> 0 when num_model_based is 0"
            )
        check_int("concurrency", self.concurrency)
        check_trial_resources(
            self.cpus_per_trial,
            self.gpus_per_trial,
            cpus_field="cpus_per_trial",
            gpus_field="gpus_per_trial",
        )
        if self.scheduler != "fifo" and self.settings.num_evaluations < 2:
            raise ConfigurationError(
                f"`scheduler` {self.scheduler!r} stops trials at intermediate evaluations, but "
                f"`num_evaluations` is {self.settings.num_evaluations}. Set num_evaluations >= 2 "
                f"(e.g. 3), or use scheduler='fifo'."
            )
        for name in ("background", "fill_with_random", "multi_fidelity", "cost_input"):
            if not isinstance(getattr(self, name), bool):
                raise invalid_value(name, getattr(self, name), valid=[True, False])
        if self.background:
            self._autopeft_only(
                "--background-suggestions",
                "`background` suggestions are built into the autopeft searcher",
                "computes its suggestions on the event loop",
            )
        if self.multi_fidelity and (self.searcher != "autopeft" or self.scheduler == "fifo"):
            used = (
                f"--searcher {self.searcher}" if self.searcher != "autopeft" else "--scheduler fifo"
            )
            raise ConfigurationError(
                f"`multi_fidelity` fits the results of trials that the autopeft searcher's "
                f"scheduler stopped early; with {used} there are none to fit. Use "
                f"--searcher autopeft with --scheduler asha or hyperband, or drop --multi-fidelity."
            )
        check_searcher_flags(
            surrogate=str(self.surrogate),
            background=self.background,
            fill_with_random=self.fill_with_random,
            multi_fidelity=bool(self.multi_fidelity),
        )
        if self.cost_input:
            self._autopeft_only(
                "--cost-input",
                "`cost_input` is an input of the autopeft searcher's score model",
                "has no such model",
            )
        if self.max_baseline is not None:
            check_int("max_baseline", self.max_baseline)
            self._autopeft_only(
                "--max-baseline", "`max_baseline` bounds the autopeft searcher's acquisition"
            )
        if self.reference_point is not None:
            check_reference_point(self.reference_point)
        if not isinstance(self.nuts, (list, tuple)) or len(self.nuts) != 3:
            raise invalid_value("nuts", self.nuts, expected="(warmup, samples, thinning)")
        for value in self.nuts:
            check_int("nuts", value)
        for name in self.baselines:
            if name not in BASELINE_NAMES:
                raise invalid_value("baselines", name, valid=BASELINE_NAMES)

    def _resolve_scheduler_defaults(self) -> None:
        """Set the unset (``None``) ``surrogate``, ``multi_fidelity`` and ``cost_input``.

        With the autopeft searcher and a scheduler that stops trials (asha,
        hyperband), the multi-fidelity MAP model with the cost input, which fits
        the trials stopped early: on PEFTBench's real trainings, a model of every
        rung ranked unseen configurations at 4x with a median Spearman of 0.58,
        one of the trials that reached 4x alone -0.03 (better on 19 of 20 data
        seeds; BENCHMARKS.md, "Learning from every rung"). Otherwise, or when
        ``multi_fidelity=False`` or the NUTS surrogate is given, the paper's NUTS
        model of completed trials. A value given is kept, so ``search.json``
        holds what ran.
        """
        stops = self.searcher == "autopeft" and self.scheduler != "fifo"
        every_rung = stops and self.multi_fidelity is not False and self.surrogate != "saas-nuts"
        if self.surrogate is None:
            object.__setattr__(self, "surrogate", "saas-map" if every_rung else "saas-nuts")
        if self.multi_fidelity is None:
            object.__setattr__(self, "multi_fidelity", every_rung)
        if self.cost_input is None:
            object.__setattr__(self, "cost_input", stops and bool(self.multi_fidelity))

    def _autopeft_only(self, flag: str, what: str, lack: str = "has none") -> None:
        """Refuse ``flag`` with another searcher: "<what>; --searcher X <lack>. Use ..."."""
        if self.searcher != "autopeft":
            raise ConfigurationError(
                f"{what}; --searcher {self.searcher} {lack}. "
                f"Use --searcher autopeft, or drop {flag}."
            )

    def with_initial_design(self, space: SearchSpace) -> SearchOptions:
        """These options with ``num_initial`` set: as given, else :func:`initial_design_size`."""
        if self.num_initial is not None:
            return self
        return replace(self, num_initial=initial_design_size(space))

    @property
    def num_trials(self) -> int:
        """Trials in all; ``num_initial`` must be set (:meth:`with_initial_design`)."""
        if self.num_initial is None:
            raise ConfigurationError(
                "`num_initial` is unset (scaled to the space): call "
                "options.with_initial_design(space) before counting the trials."
            )
        return self.num_initial + self.num_model_based

    @property
    def resources(self) -> dict[str, Any]:
        """The fields of ``RESOURCE_FIELDS`` (what ``evaluate_configurations`` takes too)."""
        return {name: getattr(self, name) for name in RESOURCE_FIELDS}

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["settings"] = self.settings.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchOptions:
        """Inverse of :meth:`to_dict` (``search.json``); unknown keys are refused."""
        data = dict(data)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise invalid_value(
                "search option", unknown[0], valid=sorted(known), fix="Check the spelling."
            )
        if "settings" in data:
            data["settings"] = TrainingSettings.from_dict(data["settings"])
        for name in ("nuts", "reference_point", "baselines"):
            if data.get(name) is not None:
                data[name] = tuple(data[name])
        return cls(**data)
