package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/socktrace/socktrace/internal/analysis"
	"github.com/socktrace/socktrace/internal/events"
	"github.com/socktrace/socktrace/internal/report"
)

func newReportCmd() *cobra.Command {
	f := &flags{}
	var out string
	var force bool
	cmd := &cobra.Command{
		Use:   "report [flags] FILE... -o report.html [-- FILTER]",
		Short: "Make one self-contained HTML page from captures, to attach to a post-mortem",
		Long: `report replays capture files (socktrace -w, rotated files, flight
recordings) as socktrace read does, with the same filters and analysis,
and writes one HTML page: connect attempts over time by destination with
the alerts, DNS answers and drops on the same axis, live sockets by state,
the failing destinations' sockets as swimlanes, and tables of the
destinations, CLOSE-WAIT leaks, listeners under pressure, losses and the
recording's facts.

The page needs nothing else: no request leaves it (inline SVG and CSS,
no script), it prints, and follows a dark colour scheme. Capture formats
1 to 4 (every socktrace version so far) are read.`,
		Example: `  socktrace report /var/tmp/incident.st -o incident.html
  socktrace report 'incident.st*' -o incident.html -- 'dport = :9092'`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return fmt.Errorf("no capture file given: socktrace report FILE... -o report.html (files written with socktrace -w FILE)")
			}
			return nil
		},
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			files, expr, err := captureArgs(cmd, args, "socktrace report FILE... -o report.html")
			if err != nil {
				return err
			}
			if out == "" {
				return fmt.Errorf("no output file: add -o report.html (or -o - for stdout)")
			}
			f.attach = events.AttachAuto
			f.output = "table"
			o, err := f.parse(expr)
			if err != nil {
				return err
			}
			o.Version = version
			return writeReport(out, force, func(w *os.File) error { return report.Make(o, files, w, version) })
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return fmt.Errorf("%w\nRun 'socktrace report --help' for usage.", err)
	})
	fl := cmd.Flags()
	fl.SortFlags = false
	fl.StringVarP(&out, "output", "o", "", "write the page to `FILE` (- for stdout)")
	fl.BoolVar(&force, "force", false, "overwrite the output file if it exists")
	addFilterFlags(fl, f)
	addAnalysisFlags(fl, f)
	fl.IntVar(&f.maxDests, "max-destinations", analysis.DefaultMaxDests, "remember at most `N` destinations of connect attempts")
	return cmd
}

// writeReport writes the page to path through a temporary file renamed
// into place, so that a failed report leaves no half page behind.
func writeReport(path string, force bool, write func(*os.File) error) error {
	if path == "-" {
		return write(os.Stdout)
	}
	if !force {
		if _, err := os.Stat(path); err == nil {
			return fmt.Errorf("%s exists: choose another -o FILE, or add --force to overwrite it", path)
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".socktrace-report-*")
	if err != nil {
		return fmt.Errorf("creating the report: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := write(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o600); err != nil { // like captures: it holds addresses and process names
		tmp.Close()
		return fmt.Errorf("creating the report: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing the report %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing the report %s: %w", path, err)
	}
	return nil
}
