package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/socktrace/socktrace/internal/pipeline"
	"github.com/socktrace/socktrace/internal/ss"
)

func newSSCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "ss [ss options] [state FILTER...] [EXPRESSION]",
		Short: "ss for TCP: its command line, its output, its filter language; --follow keeps going",
		Long: `socktrace ss reads ss's own command line for TCP sockets (-t -a -l -n -r -o -e
-p -i -m -H -4 -6 -O -s, state and exclude, ss's filter expression) and
prints what ss prints for the same sockets. With --follow it then keeps
showing the state transitions of the sockets the filter selects.

` + ss.Usage,
		Example: `  socktrace ss -rnt dst :9200
  socktrace ss -tarn state close-wait
  socktrace ss -antlp state syn-sent dst :9200 --follow`,
		DisableFlagParsing: true,
		SilenceUsage:       true,
		SilenceErrors:      true,
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := ss.Parse(args)
			if err != nil {
				return fmt.Errorf("ss: %w\nRun 'socktrace ss --help' for usage.", err)
			}
			switch {
			case o.Help:
				fmt.Print(ss.Usage)
				return nil
			case o.Version:
				fmt.Printf("socktrace version %s\n", version)
				return nil
			}
			out := bufio.NewWriterSize(os.Stdout, 64<<10)
			if o.Summary {
				if err := ss.Summary(out); err != nil {
					return err
				}
			}
			if o.WantTable() {
				width := 0
				if ws, err := unix.IoctlGetWinsize(int(os.Stdout.Fd()), unix.TIOCGWINSZ); err == nil && ws.Col > 0 {
					width = int(ws.Col)
				}
				if err := ss.List(out, o, width); err != nil {
					return err
				}
			}
			if err := out.Flush(); err != nil && !isBrokenPipe(err) {
				return err
			}
			if !o.Follow {
				return nil
			}
			po, err := followOptions(o)
			if err != nil {
				return err
			}
			return pipeline.Trace(cmd.Context(), po)
		},
	}
}

// followOptions is the trace that follows an ss listing: the same
// sockets (states and expression), no second listing.
func followOptions(o *ss.Options) (*pipeline.Options, error) {
	f := &flags{}
	fl := pflag.NewFlagSet("follow", pflag.ContinueOnError)
	addViewFlags(fl, f) // the defaults of socktrace's own flags
	addTraceFlags(fl, f)
	f.noSnapshot = true
	f.numeric, f.resolve = o.Numeric, o.Resolve
	f.states = []string{o.States.String()}
	f.netns = o.Netns
	switch o.Family {
	case unix.AF_INET:
		f.ipv4 = true
	case unix.AF_INET6:
		f.ipv6 = true
	}
	return f.parse(o.Args)
}

func isBrokenPipe(err error) bool { return errors.Is(err, unix.EPIPE) }
