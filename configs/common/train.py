# Common training settings: `from ..common.train import train` and change what differs.
train = dict(
    output_dir="./output",
    init_checkpoint="",
    # --eval-only refuses a model without trained weights (no init_checkpoint, and no tower
    # checkpoint where the model evaluates its tower alone); True evaluates random heads on purpose
    allow_random_init=False,
    max_iter=90000,
    # "auto" = cuda when a GPU is visible, else cpu (resolved by train_net.py).
    device="auto",
    # Mixed precision. enabled: "auto" = on for CUDA only; dtype "float16" (CUDA, GradScaler) or
    # "bfloat16" (CUDA or CPU; e.g. train.amp.enabled=True train.amp.dtype=bfloat16 on the CPU).
    amp=dict(enabled="auto", dtype="float16"),
    # Global gradient-norm clipping (F-ViT uses max_norm=1.0).
    clip_grad=dict(enabled=False, params=dict(max_norm=1.0, norm_type=2.0)),
    ddp=dict(  # options for DistributedDataParallel
        broadcast_buffers=False,
        find_unused_parameters=False,
        fp16_compression=False,
    ),
    checkpointer=dict(period=5000, max_to_keep=100),  # options for PeriodicCheckpointer
    eval_period=5000,
    log_period=20,
    seed=0,
    cudnn_benchmark=False,
    # torch.compile of the model's forward (nn.Module.compile: checkpoint keys unchanged). Off by
    # default: measured on this project's CPU step in docs/performance.md §4, not assumed faster.
    compile=dict(enabled=False, mode=None),
)
