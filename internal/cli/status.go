package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	units "github.com/docker/go-units"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/cocoonstack/cocoon/internal/engine"
	"github.com/cocoonstack/cocoon/internal/view"
)

func (a *app) vmStatus() *cobra.Command {
	var interval int
	var event bool
	var format string
	cmd := &cobra.Command{
		Use:   "status [VM...]",
		Short: "Watch VM status in real time (refresh, or --event stream)",
		Long: "Watch VMs: refresh mode redraws the list when anything changes; --event appends ADDED,\n" +
			"MODIFIED and DELETED lines (one JSON object per line with --format json). Changes are seen\n" +
			"through fsnotify on the VM index, with --interval as a fallback poll.",
		RunE: func(cmd *cobra.Command, args []string) error {
			if interval <= 0 {
				interval = 5
			}
			if format != "" && format != "json" {
				return fmt.Errorf("invalid --format %q: use json (event mode)", format)
			}
			e, err := a.engine(engine.Options{})
			if err != nil {
				return err
			}
			var render func([]engine.VM) error
			if event {
				render = a.eventRenderer(format == "json")
			} else {
				render = a.refreshRenderer()
			}
			return e.WatchVMs(cmd.Context(), time.Duration(interval)*time.Second, func(all []engine.VM) error {
				return render(filterVMs(all, args))
			})
		},
	}
	cmd.Flags().IntVarP(&interval, "interval", "n", 5, "poll interval in seconds (changes show at once anyway)")
	cmd.Flags().BoolVar(&event, "event", false, "event stream mode: append changes instead of refreshing")
	cmd.Flags().StringVar(&format, "format", "", "event output format: json (event mode only)")
	return cmd
}

// filterVMs keeps VMs matching any filter by exact ID, name, or ID prefix of 3+ chars.
func filterVMs(all []engine.VM, filters []string) []engine.VM {
	if len(filters) == 0 {
		return all
	}
	var out []engine.VM
	for _, vm := range all {
		if slices.ContainsFunc(filters, func(f string) bool {
			return f == vm.ID || f == vm.Name || len(f) >= 3 && strings.HasPrefix(vm.ID, strings.ToUpper(f))
		}) {
			out = append(out, vm)
		}
	}
	return out
}

// fingerprint is what counts as a change of a VM.
func fingerprint(vm engine.VM) string {
	return fmt.Sprint(vm.Name, vm.State, vm.Config.CPU, vm.Config.Memory, vm.IPs(), vm.Config.Image)
}

func (a *app) refreshRenderer() func([]engine.VM) error {
	last := "\x00"
	tty := false
	if f, ok := a.stdout.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	return func(vms []engine.VM) error {
		var sig strings.Builder
		for _, vm := range vms {
			sig.WriteString(vm.ID + fingerprint(vm) + "\n")
		}
		if sig.String() == last {
			return nil
		}
		last = sig.String()
		if tty {
			fmt.Fprint(a.stdout, "\x1b[H\x1b[2J")
		}
		now := time.Now()
		fmt.Fprintf(a.stdout, "Every %s — press Ctrl+C to quit (%s)\n\n", now.Format("15:04:05"), now.Format("2006-01-02"))
		return a.printVMTable(vms)
	}
}

func (a *app) eventRenderer(asJSON bool) func([]engine.VM) error {
	known := map[string]engine.VM{}
	headerDone := false
	return func(vms []engine.VM) error {
		seen := map[string]bool{}
		var events []vmEvent
		for _, vm := range vms {
			seen[vm.ID] = true
			old, ok := known[vm.ID]
			switch {
			case !ok:
				events = append(events, vmEvent{"ADDED", vm})
			case fingerprint(old) != fingerprint(vm):
				events = append(events, vmEvent{"MODIFIED", vm})
			}
			known[vm.ID] = vm
		}
		for id, vm := range known {
			if !seen[id] {
				events = append(events, vmEvent{"DELETED", vm})
				delete(known, id)
			}
		}
		if asJSON {
			return writeJSONEvents(a.stdout, events)
		}
		var rows [][]string
		for _, ev := range events {
			vm := ev.vm
			rows = append(rows, []string{ev.name, vm.ID, vm.Name, string(vm.State), fmt.Sprint(vm.Config.CPU),
				units.BytesSize(float64(vm.Config.Memory)), ipList(vm), vm.Config.Image})
		}
		header := []string{"EVENT", "ID", "NAME", "STATE", "CPU", "MEMORY", "IP", "IMAGE"}
		if headerDone {
			header = nil
		}
		headerDone = true
		if len(rows) == 0 && header == nil {
			return nil
		}
		return printTable(a.stdout, header, rows)
	}
}

// vmEvent is one change seen by the event renderer.
type vmEvent struct {
	name string // ADDED | MODIFIED | DELETED
	vm   engine.VM
}

func writeJSONEvents(w io.Writer, events []vmEvent) error {
	enc := json.NewEncoder(w)
	for _, ev := range events {
		if err := enc.Encode(view.Event{Event: ev.name, VM: view.VMOf(&ev.vm)}); err != nil {
			return err
		}
	}
	return nil
}

func ipList(vm engine.VM) string {
	if ips := vm.IPs(); len(ips) > 0 {
		return strings.Join(ips, ",")
	}
	return "-"
}
