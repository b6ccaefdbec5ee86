import pytest


@pytest.fixture(scope="session")
def artifact(trained, tmp_path_factory):
    """A K=20 fp32 artifact exported from the session's tiny checkpoint."""
    from lite_export.exporters.onnx import ExportOptions, export_artifact

    *_, ckpt = trained
    out = tmp_path_factory.mktemp("art") / "tiny"
    return export_artifact(ckpt, out, ExportOptions(k=20), log=None)
