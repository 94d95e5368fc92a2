from pathlib import Path

import pytest

import securities

DATA_DIR = Path(securities.__file__).resolve().parent / "data"


@pytest.fixture
def write_csv(tmp_path):
    """Write `text` (dedented lines) to a CSV file under tmp_path and return its path."""

    def write(text: str, name: str = "bars.csv") -> Path:
        path = tmp_path / name
        path.write_text("\n".join(line.strip() for line in text.strip().splitlines()) + "\n")
        return path

    return write
