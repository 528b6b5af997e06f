"""Names of the tiers and of the transfer paths between them.

Every component (planner, engine workers, simulator devices, tracer) uses these strings,
so a transfer record from the engine and one from the twin can be compared directly.
"""

GPU = "gpu"
CPU = "cpu"
SSD = "ssd"
REMOTE = "remote"
TIERS = (GPU, CPU, SSD, REMOTE)
CACHE_TIERS = (CPU, SSD, REMOTE)

H2D = "h2d"  # CPU -> GPU
D2H = "d2h"  # GPU -> CPU
SSD_READ = "ssd_read"  # SSD -> CPU
SSD_WRITE = "ssd_write"  # CPU -> SSD
REMOTE_READ = "remote_read"  # remote -> CPU
REMOTE_WRITE = "remote_write"  # CPU -> remote
PATHS = (H2D, D2H, SSD_READ, SSD_WRITE, REMOTE_READ, REMOTE_WRITE)

# (source tier, destination tier) of each path.
PATH_TIERS = {
    H2D: (CPU, GPU),
    D2H: (GPU, CPU),
    SSD_READ: (SSD, CPU),
    SSD_WRITE: (CPU, SSD),
    REMOTE_READ: (REMOTE, CPU),
    REMOTE_WRITE: (CPU, REMOTE),
}
