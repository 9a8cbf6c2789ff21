"""solver.adamw: torch's AdamW, fused kernels only when every parameter is on CUDA."""
import torch

from clipself.solver import adamw, build_param_groups


def test_auto_is_not_fused_on_cpu_and_steps_like_torch():
    torch.manual_seed(0)
    a, b = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    b.load_state_dict(a.state_dict())
    ours = adamw(build_param_groups(a, weight_decay=0.1), lr=1e-2, weight_decay=0.1)
    ref = torch.optim.AdamW(build_param_groups(b, weight_decay=0.1), lr=1e-2, weight_decay=0.1)
    assert all(not g["fused"] for g in ours.param_groups)
    x = torch.randn(8, 4)
    for model, opt in ((a, ours), (b, ref)):
        for _ in range(3):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert adamw(torch.nn.Linear(2, 2).parameters(), lr=1e-3).param_groups[0]["lr"] == 1e-3
