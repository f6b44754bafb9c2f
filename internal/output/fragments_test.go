package output

import (
	"bufio"
	"bytes"
	"math"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/dns/dnscache"
	"github.com/socktrace/socktrace/internal/owner/identity"
	"github.com/socktrace/socktrace/internal/tcpstate"
)

func TestAppendUint(t *testing.T) {
	vals := []uint64{0, 1, 9, 10, 11, 99, 100, 101, 999, 1000, 65535, 4026531840, 123456789012,
		1<<32 - 1, 1 << 32, math.MaxInt64, 1 << 63, math.MaxUint64, math.MaxUint64 - 1}
	for i := range pow10 {
		vals = append(vals, pow10[i]-1, pow10[i], pow10[i]+1)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		vals = append(vals, rng.Uint64()>>rng.IntN(64))
	}
	for _, v := range vals {
		if got, want := string(appendUint([]byte("x"), v)), "x"+strconv.FormatUint(v, 10); got != want {
			t.Fatalf("appendUint(%d) = %q, want %q", v, got, want)
		}
		if got, want := string(appendInt(nil, int64(v))), strconv.FormatInt(int64(v), 10); got != want {
			t.Fatalf("appendInt(%d) = %q, want %q", int64(v), got, want)
		}
	}
}

// TestJSONFragments: records written with the caches warm are those a
// writer with cold caches writes, whatever changes between records of a
// socket or a thread, and whichever slots collide; through a bufio.Writer
// (records formatted in its buffer) and through another writer.
func TestJSONFragments(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	addrs := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("10.1.2.3"),
		netip.MustParseAddr("fd00::1"), netip.MustParseAddr("2001:db8::dead:beef"), {}}
	origins := []*dnscache.Origin{nil, {Name: "kafka.example"}, {Name: "kafka.example"}, {Name: `we"ird`}}
	ids := []*identity.Identity{nil, otPod, {Unit: "nginx.service", Cgroup: "/system.slice/nginx.service"}}
	comms := []string{"bench-loadgen", "swapper/1", "java", "ksoftirqd/0", "\x1b[2J"}
	pick := func(n int) int { return rng.IntN(n) }
	var cached, reference bytes.Buffer
	bw := bufio.NewWriterSize(&cached, 64<<10)
	warm := NewJSON(bw)
	var other otBuffer
	warmOther := NewJSON(&other)
	for i := range 20000 {
		tr := otTransition()
		tr.Time = otTime.Add(time.Duration(rng.Int64N(1e12)))
		tr.Ktime = rng.Uint64() >> pick(64)
		// Few cookies, some colliding in the cache (multiples of headSlots).
		tr.Cookie = uint64(pick(4)) * headSlots * uint64(1+pick(3))
		tr.Netns = uint32(4026531840 + pick(2))
		tr.Family = []uint16{unix.AF_INET, unix.AF_INET6}[pick(2)]
		tr.Src, tr.Dst = addrs[pick(len(addrs))], addrs[pick(len(addrs))]
		tr.SPort, tr.DPort = uint16(pick(3)), uint16(pick(3)*7777)
		tr.DNS = origins[pick(len(origins))]
		tr.Actual = []netip.AddrPort{{}, netip.MustParseAddrPort("10.4.1.81:9092"), netip.MustParseAddrPort("10.4.1.82:9092")}[pick(3)]
		tr.Old, tr.New = tcpstate.State(pick(int(tcpstate.Last)+2)), tcpstate.State(1+pick(int(tcpstate.Last)))
		tr.InOldKnown = pick(2) == 0
		tr.InOld = time.Duration(rng.Int64N(1e10))
		tr.OwnerKnown = pick(3) != 0
		tr.OwnerPID, tr.OwnerTID = uint32(pick(3)), uint32(pick(3)+64*pick(2))
		tr.OwnerComm, tr.OwnerID = comms[pick(len(comms))], ids[pick(len(ids))]
		tr.TaskPID, tr.TaskTID = uint32(pick(3)), uint32(pick(3)+64*pick(2))
		tr.TaskComm = comms[pick(len(comms))]
		tr.UID = uint32(pick(2) * 1000)
		tr.SkErr = uint16([]unix.Errno{0, unix.ECONNREFUSED, unix.ETIMEDOUT}[pick(3)])
		tr.TCPStats = pick(2) == 0
		if err := warm.Transition(&tr); err != nil {
			t.Fatal(err)
		}
		if err := warmOther.Transition(&tr); err != nil {
			t.Fatal(err)
		}
		var one otBuffer
		if err := NewJSON(&one).Transition(&tr); err != nil {
			t.Fatal(err)
		}
		reference.Write(one.Bytes())
		if i%1000 == 999 {
			bw.Flush()
		}
	}
	bw.Flush()
	if !bytes.Equal(cached.Bytes(), reference.Bytes()) {
		t.Fatalf("records with warm caches (bufio) differ from cold ones:\n%s", firstDiff(cached.Bytes(), reference.Bytes()))
	}
	if !bytes.Equal(other.Bytes(), reference.Bytes()) {
		t.Fatalf("records with warm caches differ from cold ones:\n%s", firstDiff(other.Bytes(), reference.Bytes()))
	}
}

func firstDiff(a, b []byte) string {
	al, bl := bytes.Split(a, []byte("\n")), bytes.Split(b, []byte("\n"))
	for i := range min(len(al), len(bl)) {
		if !bytes.Equal(al[i], bl[i]) {
			return "line " + strconv.Itoa(i+1) + ":\n got " + string(al[i]) + "\nwant " + string(bl[i])
		}
	}
	return "lengths differ: " + strconv.Itoa(len(al)) + " vs " + strconv.Itoa(len(bl)) + " lines"
}
