package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"syscall"
	"time"
)

// witnessCounts is what bench/tpcount saw in a trial: the transitions
// the kernel handed to its program on inet_sock_set_state for the
// benchmark's address, and the times it was skipped (recursion misses,
// of any socket).
type witnessCounts struct {
	Seen   int64
	Misses int64
}

// A witness is a running bench/tpcount.
type witness struct {
	cmd  *exec.Cmd
	out  *bytes.Buffer // its report (stdout after the first line)
	errs *bytes.Buffer
	read chan struct{} // closed when stdout is read to its end
}

// startWitness starts tpcount on addr and waits until it is attached.
func startWitness(path, addr string) (*witness, error) {
	cmd := exec.Command(path, "-addr", addr)
	w := &witness{cmd: cmd, out: &bytes.Buffer{}, errs: &bytes.Buffer{}, read: make(chan struct{})}
	out := w.out
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = w.errs
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", path, err)
	}
	attached := make(chan error, 1)
	go func() {
		defer close(w.read)
		sc := bufio.NewScanner(stdout)
		first := true
		for sc.Scan() {
			if first {
				attached <- nil
				first = false
				continue
			}
			out.WriteString(sc.Text() + "\n")
		}
		if first {
			attached <- fmt.Errorf("%s exited before attaching", path)
		}
	}()
	select {
	case err := <-attached:
		if err != nil {
			<-w.read
			cmd.Wait()
			return nil, fmt.Errorf("%w: %s", err, tail(w.errs.String(), 300))
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("%s did not attach in 30s", path)
	}
	return w, nil
}

var (
	witnessRuns = regexp.MustCompile(`(?m)^inet_sock_set_state: runs \d+, recursion misses (\d+),`)
	witnessSeen = regexp.MustCompile(`(?m)^transitions seen: (\d+); destroys seen: \d+$`)
)

// stop ends the witness and returns its counts (nil witness: nothing).
func (w *witness) stop() (witnessCounts, error) {
	if w == nil {
		return witnessCounts{}, fmt.Errorf("no witness")
	}
	w.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-w.read: // its report is read; Wait may close the pipe now
	case <-time.After(30 * time.Second):
		w.cmd.Process.Kill()
		<-w.read
		w.cmd.Wait()
		return witnessCounts{}, fmt.Errorf("tpcount did not stop in 30s")
	}
	if err := w.cmd.Wait(); err != nil {
		return witnessCounts{}, fmt.Errorf("tpcount: %v: %s", err, tail(w.errs.String(), 300))
	}
	text := w.out.String()
	m, s := witnessRuns.FindStringSubmatch(text), witnessSeen.FindStringSubmatch(text)
	if m == nil || s == nil {
		return witnessCounts{}, fmt.Errorf("tpcount's report not understood: %s", tail(text, 300))
	}
	var c witnessCounts
	c.Misses, _ = strconv.ParseInt(m[1], 10, 64)
	c.Seen, _ = strconv.ParseInt(s[1], 10, 64)
	return c, nil
}

// notRun is how many of the transitions the load made the kernel ran no
// BPF program on inet_sock_set_state for, and counted no miss, as the
// witness counted: expected less what it saw and what it was skipped for
// (its misses are of any socket, so this errs low). 0 without a witness.
func notRun(t trial) int64 {
	if t.Witness == nil {
		return 0
	}
	n := t.Expected - t.Witness.Seen - t.Witness.Misses
	if n < 0 {
		return 0
	}
	return n
}

// notRunText is notRun for the log: "-" without a witness.
func notRunText(t trial) string {
	if t.Witness == nil {
		return "-"
	}
	return strconv.FormatInt(notRun(t), 10)
}
