"""Channel-layer group names for the model registry's live updates."""


def model_group(model_id: int) -> str:
    """A registered model's page: its versions' validation and alias changes."""
    return f"registry.model.{model_id}"
