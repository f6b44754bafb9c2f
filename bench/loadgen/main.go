// Command loadgen makes TCP traffic for socktrace's benchmarks, on
// loopback only, inside a network namespace of its own, so that what it
// makes can be told apart from everything else on the host and counted.
//
//	loadgen churn [-workers 4] [-rate 0] [-duration 5s] [-conns 0] [-write 0] [-stream] [-netns PATH] [-wait]
//	loadgen hold -pairs 50000 [-wait]
//	loadgen netns
//	loadgen udpstorm -netns PATH [-rate 200000] [-duration 5s] [-senders 2]
//
// churn: workers connect to a listener, the server side accepts, reads
// what was written (-write bytes, 0 by default) and closes first; the
// client reads the end of stream and closes. Every connection therefore
// goes through the same ten inet_sock_set_state transitions (five per
// side), and the listener adds two (close -> listen, listen -> close):
// a run of N connections makes 10*N+2 transitions. -rate paces all
// workers together (connections a second; 0: as fast as they go), for
// -duration or until -conns connections are made, whichever is first.
//
// churn -stream makes bulk transfers instead: each worker opens one
// connection and writes to it for -duration, then shuts down its side
// and waits for the server, which reads to the end of stream, to close.
// Each connection still makes ten transitions (the client closes first).
//
// churn -netns PATH runs in an existing namespace made by "loadgen netns"
// (entered with nsenter before this program starts, so that every thread
// is in it) instead of a new one: successive runs, each with a listener
// of its own, share one namespace, and a tracer can stay attached to it
// across them.
//
// netns: makes and sets up a namespace as churn does, prints its ready
// line, and keeps it until stdin reaches EOF.
//
// udpstorm: in an existing namespace (-netns, required), sends small UDP
// datagrams to a port of -addr nobody listens on, -rate a second over
// -senders unconnected sockets, for -duration: each is freed by the
// kernel as a drop (NO_SOCKET), a load of non-TCP drops for socktrace's
// drop program. It prints {"event":"done","packets":N,...}.
//
// hold: opens -pairs connections and keeps both ends open (2*pairs
// established sockets) until stdin reaches EOF. They are spread over
// processes holding at most 9,000 connections each (18,000 files), each
// with a listener of its own on ports -port, -port+1, ...
//
// On stdout, one JSON object a line: {"event":"ready",...} with the pid
// and the namespace path (/proc/PID/ns/net) once the namespace is set up,
// then, for churn, {"event":"done",...} with what was made. With -wait,
// the work starts only after a line is read from stdin, so that a tracer
// can be attached to the namespace first.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	lo "github.com/socktrace/socktrace/internal/loopback"
)

// envChild marks the re-executed child that runs in the new namespace.
const envChild = "SOCKTRACE_LOADGEN_NETNS"

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	if os.Getenv(envChild) == "" {
		os.Exit(reexec())
	}
	var err error
	switch os.Args[1] {
	case "churn":
		err = churn(os.Args[2:])
	case "hold":
		err = hold(os.Args[2:])
	case "hold-part":
		err = holdPart(os.Args[2:])
	case "netns":
		err = keepNetns(os.Args[2:])
	case "udpstorm":
		err = udpStorm(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "loadgen: %v\n", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: loadgen churn [-workers N] [-rate R] [-duration D] [-conns N] [-write BYTES] [-stream] [-netns PATH] [-wait]\n       loadgen hold -pairs N [-wait]\n       loadgen netns\n       loadgen udpstorm -netns PATH [-rate R] [-duration D] [-senders N]")
	os.Exit(2)
}

// reexec runs this program again in a new network namespace (clone with
// CLONE_NEWNET: every thread of the child is in it), or with -netns PATH
// in that one (through nsenter, which enters it before this program
// starts: Go's setns would move one thread only), with the same
// arguments and standard streams, and returns its exit code.
func reexec() int {
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "loadgen: %v\n", err)
		return 1
	}
	cmd := exec.Command(self, os.Args[1:]...)
	attr := &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	if ns := netnsArg(os.Args[2:]); ns != "" {
		cmd = exec.Command("nsenter", append([]string{"--net=" + ns, "--", self}, os.Args[1:]...)...)
		attr.Cloneflags = 0
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), envChild+"=1")
	cmd.SysProcAttr = attr
	// The child gets the signals; we only wait for it.
	signal.Ignore(os.Interrupt, syscall.SIGTERM)
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		fmt.Fprintf(os.Stderr, "loadgen: run in a new network namespace (needs root): %v\n", err)
		return 1
	}
	return 0
}

// netnsArg returns the value of a -netns flag among args ("" if none);
// the flags are parsed for good in the child.
func netnsArg(args []string) string {
	for i, a := range args {
		if a == "--" {
			break
		}
		name, v, hasV := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "netns" {
			continue
		}
		if hasV {
			return v
		}
		if i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// inNetns checks that this process runs in the namespace at path.
func inNetns(path string) error {
	var want, self unix.Stat_t
	if err := unix.Stat(path, &want); err != nil {
		return fmt.Errorf("-netns: %w", err)
	}
	if err := unix.Stat("/proc/self/ns/net", &self); err != nil {
		return err
	}
	if want.Ino != self.Ino || want.Dev != self.Dev {
		return fmt.Errorf("-netns %s: not running in it (run through nsenter?)", path)
	}
	return nil
}

// setupNetns brings lo up and sizes the namespace's own TCP limits for
// churn: the whole ephemeral port range and deep accept queues.
func setupNetns() error {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &st); err != nil {
		return err
	}
	var init unix.Stat_t
	if err := unix.Stat("/proc/1/ns/net", &init); err == nil && init.Ino == st.Ino {
		return errors.New("refusing to run in the host's network namespace")
	}
	if err := lo.Up(); err != nil {
		return err
	}
	for k, v := range map[string]string{
		"net/ipv4/ip_local_port_range": "1024 65535",
		"net/core/somaxconn":           "65535",
		"net/ipv4/tcp_max_syn_backlog": "65535",
	} {
		if err := os.WriteFile("/proc/sys/"+k, []byte(v), 0); err != nil {
			return fmt.Errorf("set %s: %w", k, err)
		}
	}
	return nil
}

type ready struct {
	Event      string `json:"event"`
	PID        int    `json:"pid"`
	Netns      string `json:"netns"`
	NetnsInode uint64 `json:"netns_inode"`
	Addr       string `json:"addr"`
	Port       int    `json:"port"`
	Sockets    int    `json:"sockets,omitempty"` // hold: sockets held, listeners included
}

type done struct {
	Event       string `json:"event"`
	Connections int64  `json:"connections"`
	Failed      int64  `json:"failed"`
	// ConnectFailed: of the failed, those whose connect() itself failed
	// (an attempt that did not get established); the others failed
	// after (a write or read), or before (socket()).
	ConnectFailed int64   `json:"connect_failed"`
	Seconds       float64 `json:"seconds"`
	Rate          float64 `json:"rate"`
	Workers       int     `json:"workers"`
	TargetRate    float64 `json:"target_rate"`
	Behind        float64 `json:"behind_seconds"` // how far the pacing fell behind at the end
	// TCP counters of the namespace (all of them its own) that tell a
	// connection did not go the usual way: retransmits, aborts, drops.
	TCP map[string]int64 `json:"tcp,omitempty"`
	// TCPAtEnd: the same counters when -duration ended, and LoadSeconds
	// that duration: the rate while the load ran (a -stream load's
	// transfers then take a while to drain and close on a lossy link).
	TCPAtEnd    map[string]int64 `json:"tcp_at_end,omitempty"`
	LoadSeconds float64          `json:"load_seconds,omitempty"`
}

// tcpCounters reads the namespace's TCP counters that should stay 0.
func tcpCounters() map[string]int64 {
	want := map[string]bool{"RetransSegs": true, "AttemptFails": true, "EstabResets": true, "OutRsts": true,
		"TCPTimeouts": true, "ListenOverflows": true, "ListenDrops": true, "TCPAbortOnClose": true,
		"TCPAbortOnData": true, "TCPAbortOnMemory": true, "TCPBacklogDrop": true, "TCPTimeWaitOverflow": true,
		"TCPSynRetrans": true, "TCPLostRetransmit": true, "TCPReqQFullDrop": true, "OutOfWindowIcmps": true}
	out := map[string]int64{}
	for _, f := range []string{"/proc/net/snmp", "/proc/net/netstat"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		lines := strings.Split(string(b), "\n")
		for i := 0; i+1 < len(lines); i += 2 {
			keys, vals := strings.Fields(lines[i]), strings.Fields(lines[i+1])
			for j := 1; j < len(keys) && j < len(vals); j++ {
				if want[keys[j]] {
					if n, _ := strconv.ParseInt(vals[j], 10, 64); n != 0 {
						out[keys[j]] = n
					}
				}
			}
		}
	}
	return out
}

func emit(v any) {
	b, _ := json.Marshal(v)
	os.Stdout.Write(append(b, '\n'))
}

func announce(addr netip.Addr, port, sockets int) error {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &st); err != nil {
		return err
	}
	pid := os.Getpid()
	emit(ready{Event: "ready", PID: pid, Netns: "/proc/" + strconv.Itoa(pid) + "/ns/net", NetnsInode: st.Ino, Addr: addr.String(), Port: port, Sockets: sockets})
	return nil
}

// waitGo blocks until a line (or EOF) comes on stdin.
func waitGo() {
	bufio.NewReader(os.Stdin).ReadString('\n')
}

func loopback(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return a, err
	}
	if !a.Is4() || !netip.MustParsePrefix("127.0.0.0/8").Contains(a) {
		return a, fmt.Errorf("address %s: only 127.0.0.0/8 (loopback) is allowed", a)
	}
	return a, nil
}

func listenOn(addr netip.Addr, port, backlog int) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: port, Addr: addr.As4()}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind %s:%d: %w", addr, port, err)
	}
	if err := unix.Listen(fd, backlog); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

func churn(args []string) error {
	fs := flag.NewFlagSet("churn", flag.ExitOnError)
	workers := fs.Int("workers", 4, "client workers (the server side gets as many acceptors)")
	rate := fs.Float64("rate", 0, "connections a second, all workers together; 0: as fast as possible")
	duration := fs.Duration("duration", 5*time.Second, "how long to run (with -conns: at most)")
	conns := fs.Int64("conns", 0, "stop after this many connections (0: no limit)")
	write := fs.Int("write", 0, "bytes the client writes (and the server reads) on each connection")
	stream := fs.Bool("stream", false, "bulk transfers: each worker writes on one connection for -duration, then closes (-rate, -conns and -write do not apply)")
	addrS := fs.String("addr", "127.77.0.1", "listener address (loopback only)")
	port := fs.Int("port", 7777, "listener port")
	wait := fs.Bool("wait", false, "wait for a line on stdin before starting")
	netns := fs.String("netns", "", "run in this existing namespace (made by loadgen netns) instead of a new one")
	fs.Parse(args)
	addr, err := loopback(*addrS)
	if err != nil {
		return err
	}
	if *workers < 1 {
		return errors.New("-workers must be at least 1")
	}
	if *netns != "" {
		if err := inNetns(*netns); err != nil {
			return err
		}
	}
	if err := setupNetns(); err != nil {
		return err
	}
	if err := announce(addr, *port, 0); err != nil {
		return err
	}
	if *wait {
		waitGo()
	}
	// The listener is made after the go, so a tracer sees its birth.
	lfd, err := listenOn(addr, *port, 65535)
	if err != nil {
		return err
	}

	var (
		made, failed  atomic.Int64
		connectFailed atomic.Int64
		next          atomic.Int64
		firstErr      atomic.Value
		wg, swg       sync.WaitGroup
	)
	for i := 0; i < *workers; i++ {
		swg.Add(1)
		go func() {
			defer swg.Done()
			buf := make([]byte, 64<<10)
			for {
				nfd, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC)
				if err == unix.EINTR || err == unix.ECONNABORTED {
					continue
				}
				if err != nil {
					return // listener shut down
				}
				for got := 0; *stream || got < *write; {
					n, err := unix.Read(nfd, buf)
					if err == unix.EINTR {
						continue
					}
					if n <= 0 {
						break
					}
					got += n
				}
				unix.Close(nfd)
			}
		}()
	}

	start := time.Now()
	end := start.Add(*duration)
	var interval time.Duration
	if *rate > 0 {
		interval = time.Duration(float64(time.Second) / *rate)
	}
	var behind atomic.Int64
	atEnd := make(chan map[string]int64, 1)
	go func() {
		time.Sleep(time.Until(end))
		atEnd <- tcpCounters()
	}()
	sa := &unix.SockaddrInet4{Port: *port, Addr: addr.As4()}
	payload := make([]byte, *write)
	for i := 0; i < *workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rbuf := make([]byte, 512)
			if *stream {
				if err := streamOnce(sa, end, rbuf); err != nil {
					failed.Add(1)
					if errors.Is(err, errConnect) {
						connectFailed.Add(1)
					}
					firstErr.CompareAndSwap(nil, err.Error())
					return
				}
				made.Add(1)
				return
			}
			for {
				n := next.Add(1) - 1
				if *conns > 0 && n >= *conns {
					return
				}
				if interval > 0 {
					// Paced: slot n is due at start+n*interval. A load
					// that cannot keep up runs late, but never past the
					// end: it makes fewer connections, and says so.
					at := start.Add(time.Duration(n) * interval)
					if !at.Before(end) || !time.Now().Before(end) {
						return
					}
					if d := time.Until(at); d > 0 {
						time.Sleep(d)
					} else {
						behind.Store(int64(-d))
					}
				} else if !time.Now().Before(end) {
					return
				}
				if err := connectOnce(sa, payload, rbuf); err != nil {
					failed.Add(1)
					if errors.Is(err, errConnect) {
						connectFailed.Add(1)
					}
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				made.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	// Every client has seen its server close, so every connection has
	// been accepted; let the last ACKs land, then close the listener.
	time.Sleep(50 * time.Millisecond)
	unix.Shutdown(lfd, unix.SHUT_RDWR)
	swg.Wait()
	unix.Close(lfd)
	time.Sleep(50 * time.Millisecond)
	if e := firstErr.Load(); e != nil {
		fmt.Fprintf(os.Stderr, "loadgen: %d connections failed; first: %v\n", failed.Load(), e)
	}
	d := done{Event: "done", Connections: made.Load(), Failed: failed.Load(), ConnectFailed: connectFailed.Load(), Seconds: elapsed.Seconds(),
		Rate: float64(made.Load()) / elapsed.Seconds(), Workers: *workers, TargetRate: *rate,
		Behind: time.Duration(behind.Load()).Seconds(), TCP: tcpCounters()}
	select {
	case d.TCPAtEnd = <-atEnd:
		d.LoadSeconds = duration.Seconds()
	default: // ended before -duration (-conns)
	}
	emit(d)
	return nil
}

// errConnect marks the errors of connect() itself.
var errConnect = errors.New("connect")

// connectOnce makes one connection: connect, write, wait for the server
// to close, close.
func connectOnce(sa *unix.SockaddrInet4, payload, rbuf []byte) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	for {
		err = unix.Connect(fd, sa)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("%w: %w", errConnect, err)
	}
	for off := 0; off < len(payload); {
		n, err := unix.Write(fd, payload[off:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("write: %w", err)
		}
		off += n
	}
	for {
		n, err := unix.Read(fd, rbuf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		if n == 0 {
			return nil
		}
	}
}

// streamOnce makes one bulk transfer: connect, write 64 KiB at a time
// until end, shut down the sending side, wait for the server to close,
// close.
func streamOnce(sa *unix.SockaddrInet4, end time.Time, rbuf []byte) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	for {
		err = unix.Connect(fd, sa)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("%w: %w", errConnect, err)
	}
	// A write blocks at most this long, so that the transfer ends near end.
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &unix.Timeval{Usec: 100000})
	payload := make([]byte, 64<<10)
	for time.Now().Before(end) {
		_, err := unix.Write(fd, payload)
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		if err != nil {
			return fmt.Errorf("write: %w", err)
		}
	}
	if err := unix.Shutdown(fd, unix.SHUT_WR); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	for {
		n, err := unix.Read(fd, rbuf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		if n == 0 {
			return nil
		}
	}
}

// keepNetns makes a namespace, set up as for churn, announces it and
// keeps it until stdin reaches EOF, for churn -netns runs.
func keepNetns(args []string) error {
	fs := flag.NewFlagSet("netns", flag.ExitOnError)
	addrS := fs.String("addr", "127.77.0.1", "the address churn runs will listen on (for the ready line)")
	port := fs.Int("port", 7777, "the port churn runs will listen on (for the ready line)")
	fs.Parse(args)
	addr, err := loopback(*addrS)
	if err != nil {
		return err
	}
	if err := setupNetns(); err != nil {
		return err
	}
	if err := announce(addr, *port, 0); err != nil {
		return err
	}
	bufio.NewReader(os.Stdin).ReadString(0)
	return nil
}

type stormDone struct {
	Event   string  `json:"event"`
	Packets int64   `json:"packets"`
	Failed  int64   `json:"failed"` // sends that returned an error
	Seconds float64 `json:"seconds"`
	Rate    float64 `json:"rate"`
}

// udpStorm sends UDP datagrams to a closed port; see the package comment.
func udpStorm(args []string) error {
	fs := flag.NewFlagSet("udpstorm", flag.ExitOnError)
	rate := fs.Float64("rate", 200000, "datagrams a second, all senders together")
	duration := fs.Duration("duration", 5*time.Second, "how long to send")
	senders := fs.Int("senders", 2, "sending goroutines, each with a socket of its own")
	addrS := fs.String("addr", "127.77.0.2", "destination address (loopback only)")
	port := fs.Int("port", 9, "destination port, closed")
	netns := fs.String("netns", "", "the namespace to send in (required: the load's, where the tracer is)")
	fs.Parse(args)
	if *netns == "" {
		return errors.New("udpstorm: -netns is required")
	}
	if err := inNetns(*netns); err != nil {
		return err
	}
	if *senders < 1 || *rate <= 0 {
		return errors.New("udpstorm: -senders and -rate must be positive")
	}
	addr, err := loopback(*addrS)
	if err != nil {
		return err
	}
	// The port must be closed: a bound socket would take the datagrams.
	if probe, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0); err == nil {
		err := unix.Bind(probe, &unix.SockaddrInet4{Addr: addr.As4(), Port: *port})
		unix.Close(probe)
		if err != nil {
			return fmt.Errorf("udpstorm: %s:%d is not free (%v): pick a closed port", addr, *port, err)
		}
	}
	sa := &unix.SockaddrInet4{Addr: addr.As4(), Port: *port}
	var sent, failed atomic.Int64
	start := time.Now()
	end := start.Add(*duration)
	per := *rate / float64(*senders)
	var wg sync.WaitGroup
	for i := 0; i < *senders; i++ {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer unix.Close(fd)
			payload := []byte("socktrace drop storm")
			var n int64
			// Paced in slices of a millisecond: each sends what the
			// rate owes it by then.
			for now := time.Now(); now.Before(end); now = time.Now() {
				owed := min(int64(per*now.Sub(start).Seconds())-n, 1000)
				if owed <= 0 {
					time.Sleep(200 * time.Microsecond)
					continue
				}
				for ; owed > 0; owed-- {
					if err := unix.Sendto(fd, payload, 0, sa); err != nil {
						failed.Add(1)
					}
					n++
				}
			}
			sent.Add(n)
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	emit(stormDone{Event: "done", Packets: sent.Load(), Failed: failed.Load(), Seconds: secs, Rate: float64(sent.Load()) / secs})
	return nil
}

// maxPairsPerProcess keeps each holding process under a 20,000 open-file
// limit (hard limits cannot always be raised: CAP_SYS_RESOURCE may be
// missing even for root).
const maxPairsPerProcess = 9000

func hold(args []string) error {
	fs := flag.NewFlagSet("hold", flag.ExitOnError)
	pairs := fs.Int("pairs", 5000, "connections to open and hold (each is two sockets)")
	addrS := fs.String("addr", "127.77.0.1", "listener address (loopback only)")
	port := fs.Int("port", 7777, "first listener port (one a holding process)")
	wait := fs.Bool("wait", false, "wait for a line on stdin before opening the connections")
	fs.Parse(args)
	addr, err := loopback(*addrS)
	if err != nil {
		return err
	}
	if err := setupNetns(); err != nil {
		return err
	}
	if *wait {
		waitGo()
	}
	// The connections are spread over holding processes in this
	// namespace, each with its own listener, each holding at most
	// maxPairsPerProcess.
	parts := (*pairs + maxPairsPerProcess - 1) / maxPairsPerProcess
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var stdins []interface{ Close() error }
	var cmds []*exec.Cmd
	defer func() {
		for _, in := range stdins {
			in.Close()
		}
		for _, c := range cmds {
			c.Wait()
		}
	}()
	for i := 0; i < parts; i++ {
		n := *pairs / parts
		if i < *pairs%parts {
			n++
		}
		cmd := exec.Command(self, "hold-part", "-pairs", strconv.Itoa(n), "-addr", addr.String(), "-port", strconv.Itoa(*port+i))
		cmd.Stderr = os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		in, err := cmd.StdinPipe()
		if err != nil {
			return err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		if err := cmd.Start(); err != nil {
			return err
		}
		stdins, cmds = append(stdins, in), append(cmds, cmd)
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil || line != "ok\n" {
			return fmt.Errorf("holding process %d failed (%q, %v)", i, line, err)
		}
	}
	if err := announce(addr, *port, 2**pairs+parts); err != nil {
		return err
	}
	// Hold until stdin closes; the deferred closes end the parts.
	bufio.NewReader(os.Stdin).ReadString(0)
	return nil
}

// holdPart opens and holds -pairs connections to a listener of its own,
// says "ok", and keeps them until stdin closes.
func holdPart(args []string) error {
	fs := flag.NewFlagSet("hold-part", flag.ExitOnError)
	pairs := fs.Int("pairs", 5000, "connections")
	addrS := fs.String("addr", "127.77.0.1", "listener address (loopback only)")
	port := fs.Int("port", 7777, "listener port")
	fs.Parse(args)
	addr, err := loopback(*addrS)
	if err != nil {
		return err
	}
	if err := raiseNofile(uint64(2**pairs + 64)); err != nil {
		return err
	}
	lfd, err := listenOn(addr, *port, 65535)
	if err != nil {
		return err
	}
	accErr := make(chan error, 1)
	go func() {
		for n := 0; n < *pairs; {
			_, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC)
			if err == unix.EINTR || err == unix.ECONNABORTED {
				continue
			}
			if err != nil {
				accErr <- err
				return
			}
			n++
		}
		accErr <- nil
	}()
	sa := &unix.SockaddrInet4{Port: *port, Addr: addr.As4()}
	for i := 0; i < *pairs; i++ {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		if err := unix.Connect(fd, sa); err != nil {
			return fmt.Errorf("connect #%d: %w", i, err)
		}
	}
	if err := <-accErr; err != nil {
		return fmt.Errorf("accept: %w", err)
	}
	os.Stdout.WriteString("ok\n")
	bufio.NewReader(os.Stdin).ReadString(0)
	return nil
}

// raiseNofile raises the soft open-file limit to n, within the hard one.
func raiseNofile(n uint64) error {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return err
	}
	if rl.Cur >= n {
		return nil
	}
	if rl.Max < n {
		return fmt.Errorf("need %d open files, the hard limit is %d", n, rl.Max)
	}
	rl.Cur = n
	return unix.Setrlimit(unix.RLIMIT_NOFILE, &rl)
}
