"""docs/python.md's worked example runs as written and prints what the page says it prints."""
import os
import re
import subprocess
import sys

from conftest import SOURCE


def test_the_worked_example_runs_as_written(tmp_path):
    text = (SOURCE / "docs" / "python.md").read_text()
    section = text[text.index("## A worked example"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    printed = re.search(r"Its output here[^\n]*\n\n```\n(.*?)```", section, re.S).group(1)
    (tmp_path / "docs").symlink_to(SOURCE / "docs")  # the example's relative paths, results written here
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                       env=dict(os.environ))
    assert p.returncode == 0, p.stderr
    # The same lines; numbers to 6 digits (the last bits of a sum may depend on the machine's cores).
    def rounded(out):
        return re.sub(r"\d+\.\d+", lambda m: f"{float(m.group()):.6g}", out)
    assert rounded(p.stdout) == rounded(printed)
    assert (tmp_path / "runs" / "python-example" / "report.html").is_file()
    assert (tmp_path / "runs" / "python-example" / "attributions" / "conductance" / "features.4.pt").is_file()
