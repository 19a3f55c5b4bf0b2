"""A tabular pipeline's file: `tabular/<name>.yaml`, checked whole when it is read."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from llmops.config import Settings
from llmops.errors import ConfigError
from llmops.tabular.source import FEATURES
from llmops.validation import read_yaml_model

FOLDER = Path("tabular")


class SourceSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: Literal["breast-cancer"] = Field(description="the reference data set")
    days: int = Field(10, ge=1, le=365, description="daily batches the stream is cut into")
    seed: int = Field(0, description="which entity arrives on which day")
    shift: ShiftSpec | None = Field(None, description="a drift from some day on")


class ShiftSpec(BaseModel):
    """A drift the stream carries, for the monitor to find."""

    model_config = ConfigDict(extra="forbid")

    from_day: int = Field(ge=0, description="the first day that is shifted")
    scale: float = Field(gt=0, description="shifted features read this times their value")
    features: list[str] = Field(min_length=1, description="the features shifted")

    @field_validator("features")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(FEATURES))
        if unknown:
            raise ValueError(f"unknown features {', '.join(unknown)} (known: "
                             f"{', '.join(FEATURES[:3])}, ...)")
        return value


class PipelineSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]{0,63}$",
                      description="registered as tabular.<name>")
    source: SourceSpec
    holdout: float = Field(0.25, gt=0, lt=1, description="entities held out for evaluation")
    seed: int = Field(0, description="the hold-out hash and the model's seed")

    @property
    def registered_name(self) -> str:
        return f"tabular.{self.name}"

    def root(self, settings: Settings) -> Path:
        """Where its Delta tables live."""
        return settings.home_dir / "tabular" / self.name


def load_pipeline(name_or_path: str, settings: Settings) -> PipelineSpec:
    """`cancer` (tabular/cancer.yaml in the project) or a path to a pipeline file."""
    path = Path(name_or_path)
    if not path.suffix:
        path = settings.project_dir / FOLDER / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (settings.project_dir / FOLDER).glob("*.yaml"))
        raise ConfigError(f"{path}: no such tabular pipeline (known: {', '.join(known) or 'none'})")
    return read_yaml_model(path, PipelineSpec, ConfigError)
