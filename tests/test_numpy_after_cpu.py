"""Every tensor turned into a NumPy array is on the CPU first: `.numpy()` of a CUDA tensor raises, so on a GPU a
missing `.cpu()` breaks the command, and no test here (no GPU) would run into it. So each `.numpy()` call in the
package is found in its source: it must follow `.cpu()` in the same expression, or be one of the few whose tensor is
made on the CPU, listed here with the reason."""
from __future__ import annotations

import ast
from pathlib import Path

import pneumoscan

PACKAGE = Path(pneumoscan.__file__).parent

# (file, the receiver of .numpy() as written): why its tensor is on the CPU whatever the model's device
CPU_MADE = {
    ("training/trainer.py", "order[batch_index * cfg.batch_size:end]"): "randperm/multinomial of a CPU generator",
    ("training/pretrain.py", "order[step * cfg.batch_size:(step + 1) * cfg.batch_size]"): "randperm of a CPU generator",
    ("inference/ood/features.py", "torch.cat(captured)"): "the hook keeps each batch's features .cpu()",
    ("explain/gradcam.py", "out"): "the heatmap, made with torch.zeros on the CPU, each layer's map added .cpu()",
}


def numpy_calls() -> list[tuple[str, str, int]]:
    """(file, receiver source, line) of every argument-less `.numpy()` call in the package (Tensor.numpy; a
    method of that name taking arguments, as Preprocessing.numpy(images), is another thing)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "numpy" \
                    and not node.args and not node.keywords:
                found.append((path.relative_to(PACKAGE).as_posix(), ast.unparse(node.func.value), node.lineno))
    return found


def follows_cpu(receiver: str) -> bool:
    """Whether the expression ends in a `.cpu()` call, perhaps followed by dtype or detach calls."""
    node = ast.parse(receiver, mode="eval").body
    while isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        if node.func.attr == "cpu":
            return True
        if node.func.attr not in ("detach", "float", "double", "contiguous", "clone"):
            return False
        node = node.func.value
    return False


def test_every_numpy_call_follows_cpu_or_has_a_tensor_made_on_the_cpu() -> None:
    calls = numpy_calls()
    assert len(calls) >= len(CPU_MADE) + 2  # the scan sees the package's calls (two follow .cpu())
    unexplained = [f"{file}:{line}: {receiver}.numpy()" for file, receiver, line in calls
                   if not follows_cpu(receiver) and (file, receiver) not in CPU_MADE]
    assert not unexplained, "a tensor that may live on the GPU made into a NumPy array without .cpu(): " + \
        "; ".join(unexplained)
    stale = set(CPU_MADE) - {(file, receiver) for file, receiver, _ in calls}
    assert not stale, f"listed but no longer in the source (update CPU_MADE): {sorted(stale)}"


def test_the_scan_flags_a_numpy_call_without_cpu() -> None:
    assert follows_cpu("logits.float().cpu()") and follows_cpu("x.cpu().detach()")
    assert not follows_cpu("logits.float()") and not follows_cpu("x.detach()") and not follows_cpu("x.cpu().sum()")
