package supervisor

import (
	"runtime/debug"

	"github.com/gosup/gosup/supervisor/internal/imagepages"
)

// settleMemory runs once the daemon serves (its start has made its
// spawns): it gives back to the kernel what the start no longer needs.
//
//   - The start's garbage (a burst of spawns, the configuration's parse):
//     the heap grew to twice what stays live, and the runtime returns
//     freed pages only slowly; debug.FreeOSMemory collects and returns
//     them at once.
//   - The executable's pages: the start runs code and reads constant data
//     that an idle daemon never touches again (every package's init, the
//     configuration's parse and checks, the spawn path), and the kernel
//     maps them 64 kB around each page touched (fault-around), so about
//     14 MB of a 25 MB binary stayed in the daemon's RSS. dropImagePages
//     unmaps them: they stay in the page cache (clean, shared with any
//     other gosup, reclaimable as they were), and what the daemon runs
//     from then on is mapped again at its first touch, a minor fault.
//     RSS then shows what the daemon uses (about 7 MB of it at rest).
func settleMemory() {
	debug.FreeOSMemory()
	imagepages.Drop()
}
