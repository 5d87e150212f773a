package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTick is USER_HZ, the unit of /proc/<pid>/stat's times: 100 on
// every Linux architecture Go runs on.
const clockTick = 100

// procStat is one /proc/<pid>/stat: its parent, and the CPU its threads
// used (utime+stime) and that of the children it has waited for
// (cutime+cstime).
type procStat struct {
	ppid     int
	own, kid time.Duration
}

func readProcStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	// The command name, in parentheses, may hold spaces: fields count
	// from the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state): ppid is field 4, utime..cstime 14..17.
	if len(f) < 15 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	num := func(k int) int64 { n, _ := strconv.ParseInt(f[k-3], 10, 64); return n }
	tick := func(n int64) time.Duration { return time.Duration(n) * time.Second / clockTick }
	return procStat{ppid: int(num(4)), own: tick(num(14) + num(15)), kid: tick(num(16) + num(17))}, nil
}

// processCPU is the CPU time process pid has used so far (all its
// threads); 0 when it is gone.
func processCPU(pid int) time.Duration {
	st, err := readProcStat(pid)
	if err != nil {
		return 0
	}
	return st.own
}

// treeCPU is the CPU time of process root and of its children, living
// (their own time) and ended (in root's children's time once root waited
// for them: a PostgreSQL backend that exits between two samples still
// counts once). Grandchildren are not looked for: PostgreSQL's processes
// are all the postmaster's children.
func treeCPU(root int) time.Duration {
	st, err := readProcStat(root)
	if err != nil {
		return 0
	}
	total := st.own + st.kid
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil || pid == root {
			continue
		}
		if c, err := readProcStat(pid); err == nil && c.ppid == root {
			total += c.own
		}
	}
	return total
}

// resetPeakRSS restarts the kernel's count of process pid's peak RSS
// (VmHWM), so a process that outlives a round reports that round's peak.
func resetPeakRSS(pid int) error {
	return os.WriteFile("/proc/"+strconv.Itoa(pid)+"/clear_refs", []byte("5"), 0)
}
