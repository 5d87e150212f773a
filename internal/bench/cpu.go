package bench

// CPU accounting of bench e2e: each process's user+system time
// (procstat.go), grouped by role, sampled before and after the load.

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/eventline/eventline/relay"
)

// cpuRoles names the processes a phase is measured on: role -> pids.
type cpuRoles map[string][]int

// sample is the CPU seconds of each role's processes now.
func (r cpuRoles) sample() map[string]map[int]float64 {
	out := map[string]map[int]float64{}
	for role, pids := range r {
		out[role] = map[int]float64{}
		for _, pid := range pids {
			if st, err := readProcStat(pid); err == nil {
				out[role][pid] = st.own.Seconds()
			}
		}
	}
	return out
}

// cpuDelta is the CPU seconds each role used between before and after. A
// process seen only after started in between (a pool's new connection):
// all its time counts. One that ended in between cannot be read any more
// and is missed.
func cpuDelta(before, after map[string]map[int]float64) map[string]float64 {
	out := map[string]float64{}
	for role, pids := range after {
		var sum float64
		for pid, s := range pids {
			sum += s - before[role][pid]
		}
		out[role] = sum
	}
	return out
}

// postgresPIDs groups the server processes of pool's cluster by what they
// do: "postgres walsender" (logical mode's stream), the client sessions of
// "postgres relay" and "postgres group" (by the application_name those
// processes set) and "postgres writers" (the others: the writers' pool,
// the harness's few queries), and "postgres background" (checkpointer,
// WAL writer, autovacuum, ...).
func postgresPIDs(ctx context.Context, pool *pgxpool.Pool) (cpuRoles, error) {
	rows, err := pool.Query(ctx, `SELECT pid, coalesce(backend_type, ''), coalesce(application_name, '') FROM pg_stat_activity`)
	if err != nil {
		return nil, fmt.Errorf("listing the server's processes: %w", err)
	}
	defer rows.Close()
	roles := cpuRoles{}
	for rows.Next() {
		var pid int
		var kind, app string
		if err := rows.Scan(&pid, &kind, &app); err != nil {
			return nil, err
		}
		role := "postgres background"
		switch {
		case kind == "walsender":
			role = "postgres walsender"
		case kind == "client backend" && app == relay.DefaultApplicationName:
			role = "postgres relay"
		case kind == "client backend" && app == groupAppName:
			role = "postgres group"
		case kind == "client backend":
			role = "postgres writers"
		}
		roles[role] = append(roles[role], pid)
	}
	return roles, rows.Err()
}

// listenerPID is the local process listening on addr's TCP port (the
// broker, when it runs on this machine), 0 when none is found.
func listenerPID(addr string) int {
	p, err := strconv.Atoi(addr[strings.LastIndexByte(addr, ':')+1:])
	if err != nil {
		return 0
	}
	inodes := map[string]bool{}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(table)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			// local_address is HEXIP:HEXPORT; state 0A is LISTEN.
			if len(fs) < 10 || fs[3] != "0A" {
				continue
			}
			_, hp, _ := strings.Cut(fs[1], ":")
			if v, err := strconv.ParseInt(hp, 16, 32); err == nil && int(v) == p {
				inodes["socket:["+fs[9]+"]"] = true
			}
		}
		f.Close()
	}
	if len(inodes) == 0 {
		return 0
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range procs {
		if target, err := os.Readlink(fd); err == nil && inodes[target] {
			pid, _ := strconv.Atoi(strings.Split(fd, "/")[2])
			return pid
		}
	}
	return 0
}
