package kallsyms

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	k, err := Parse(strings.NewReader(`ffffffff81000000 T _stext
ffffffff81a00000 T nf_hook_slow
ffffffff81a00100 t nf_hook_slow_list
ffffffff81a00080 D some_data
ffffffffc0100000 t netem_enqueue	[sch_netem]
0000000000000000 T hidden
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		addr uint64
		want string
	}{
		{0xffffffff81a00000, "nf_hook_slow"},
		{0xffffffff81a000ff, "nf_hook_slow"}, // data symbols are not functions
		{0xffffffff81a00100, "nf_hook_slow_list"},
		{0xffffffffc0100042, "netem_enqueue"},
		{0xffffffff80000000, ""},
	} {
		if got := k.Func(tc.addr); got != tc.want {
			t.Errorf("Func(%#x) = %q, want %q", tc.addr, got, tc.want)
		}
	}
	if _, err := Parse(strings.NewReader("0000000000000000 T x\n")); err == nil {
		t.Error("kallsyms with no addresses (not root): no error")
	}
}

func TestRange(t *testing.T) {
	k, err := Parse(strings.NewReader("ffffffff81a00000 T tcp_v4_rcv\nffffffff81a00800 t tcp_v4_do_rcv\nffffffff81a01000 T last\n"))
	if err != nil {
		t.Fatal(err)
	}
	if lo, hi := k.Range("tcp_v4_rcv"); lo != 0xffffffff81a00000 || hi != 0xffffffff81a00800 {
		t.Errorf("Range(tcp_v4_rcv) = %#x, %#x", lo, hi)
	}
	if lo, hi := k.Range("last"); lo != 0 || hi != 0 {
		t.Errorf("Range of the last symbol (no end known) = %#x, %#x, want 0, 0", lo, hi)
	}
}
