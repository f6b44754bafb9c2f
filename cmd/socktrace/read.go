package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/pipeline"
)

func newReadCmd() *cobra.Command {
	f := &flags{}
	cmd := &cobra.Command{
		Use:   "read [flags] FILE... [-- FILTER]",
		Short: "Replay a capture made with --write, with the same filters, views and analysis",
		Long: `read replays capture files written by socktrace --write: the socket
snapshot, every transition and every loss, through the same filters,
table or JSON output, alerts and summary as a live trace. It needs no
privileges and works on any machine.

FILE may be several files or a quoted glob ('cap.st*'): the files of a
rotated recording are read in recording order whatever their order on the
command line. An ss filter expression goes after --.

A truncated or damaged file (the recorder was killed, the disk filled up)
is read up to its last complete record; what was skipped is reported on
stderr.`,
		Example: `  socktrace read /var/tmp/incident.st
  socktrace read --state syn-sent --dport 9092 --summary /var/tmp/incident.st
  socktrace read -o json 'incident.st*' -- 'dst 10.0.0.0/8' | jq .
  socktrace read --follow /var/tmp/incident.st     # like tail -f`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return fmt.Errorf("no capture file given: socktrace read FILE... [-- FILTER] (files written with socktrace -w FILE)")
			}
			return nil
		},
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			files, expr, err := captureArgs(cmd, args, "socktrace read FILE... [-- FILTER]")
			if err != nil {
				return err
			}
			f.attach = events.AttachAuto
			o, err := f.parse(expr)
			if err != nil {
				return err
			}
			return pipeline.Read(o, files)
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return fmt.Errorf("%w\nRun 'socktrace read --help' for usage.", err)
	})
	fl := cmd.Flags()
	fl.SortFlags = false
	addViewFlags(fl, f)
	fl.BoolVarP(&f.follow, "follow", "f", false, "keep reading as the file grows, and into the next rotated file, like tail -f (Ctrl-C to stop)")
	return cmd
}

// captureArgs splits the arguments of read and report into capture files
// and, after --, a filter expression; usage names the command's form for
// the error when no file is given.
func captureArgs(cmd *cobra.Command, args []string, usage string) (files, expr []string, err error) {
	files = args
	if dash := cmd.ArgsLenAtDash(); dash >= 0 {
		files, expr = args[:dash], args[dash:]
	}
	if len(files) == 0 {
		return nil, nil, fmt.Errorf("no capture file given: %s", usage)
	}
	return files, expr, nil
}
