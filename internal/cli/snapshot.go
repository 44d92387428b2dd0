package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	units "github.com/docker/go-units"
	"github.com/spf13/cobra"

	"github.com/cocoonstack/cocoon/internal/engine"
	"github.com/cocoonstack/cocoon/internal/view"
)

func (a *app) snapshotCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "snapshot", Short: "Save, list, export and import snapshots of running VMs"}
	cmd.AddCommand(a.snapshotSave(), a.snapshotList(), a.snapshotInspect(), a.snapshotRm(), a.snapshotExport(), a.snapshotImport(), a.snapshotStandby())
	return cmd
}

func (a *app) snapshotSave() *cobra.Command {
	var o engine.SaveOptions
	cmd := &cobra.Command{
		Use:   "save [flags] VM",
		Short: "Create a snapshot from a running VM (paused only during the capture)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := a.engine(engine.Options{})
			if err != nil {
				return err
			}
			s, err := e.SaveSnapshot(cmd.Context(), args[0], o)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "%s\t%s\n", s.ID, s.Name)
			return nil
		},
	}
	cmd.Flags().StringVar(&o.Name, "name", "", "snapshot name (default <vm>-<time>)")
	cmd.Flags().StringVar(&o.Description, "description", "", "snapshot description")
	return cmd
}

func (a *app) snapshotList() *cobra.Command {
	var format, vm string
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List all snapshots",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFormat(format); err != nil {
				return err
			}
			e, err := a.engine(engine.Options{})
			if err != nil {
				return err
			}
			snaps, err := e.ListSnapshots(cmd.Context(), vm)
			if err != nil {
				return err
			}
			if format == "json" {
				return printJSON(a.stdout, view.SnapshotsOf(snaps))
			}
			if len(snaps) == 0 && vm != "" {
				fmt.Fprintln(a.stdout, "No snapshots found for VM.")
				return nil
			}
			if len(snaps) == 0 {
				fmt.Fprintln(a.stdout, "No snapshots found.")
				return nil
			}
			rows := make([][]string, 0, len(snaps))
			for _, s := range snaps {
				rows = append(rows, []string{s.ID, s.Name, fmt.Sprint(s.Manifest.CPU), units.BytesSize(float64(s.Manifest.Memory)),
					s.Description, s.CreatedAt.Local().Format("2006-01-02 15:04:05")})
			}
			return printTable(a.stdout, []string{"ID", "NAME", "CPU", "MEMORY", "DESCRIPTION", "CREATED"}, rows)
		},
	}
	cmd.Flags().StringVarP(&format, "format", "o", "table", "output format: table or json")
	cmd.Flags().StringVar(&vm, "vm", "", "only snapshots taken from this VM")
	return cmd
}

func (a *app) snapshotInspect() *cobra.Command {
	return a.inspectCommand("inspect SNAPSHOT", "Show detailed snapshot info (JSON)", func(ctx context.Context, e *engine.Engine, ref string) (any, error) {
		s, err := e.InspectSnapshot(ctx, ref)
		if err != nil {
			return nil, err
		}
		return view.SnapshotOf(s), nil
	})
}

func (a *app) snapshotRm() *cobra.Command {
	return a.removeCommand("rm SNAPSHOT [SNAPSHOT...]", "Delete snapshot(s)",
		func(ctx context.Context, e *engine.Engine, refs []string) ([]string, error) {
			return e.RemoveSnapshots(ctx, refs)
		})
}

func (a *app) snapshotExport() *cobra.Command {
	var output string
	var gzip bool
	cmd := &cobra.Command{
		Use:   "export [flags] SNAPSHOT",
		Short: "Export a snapshot to a portable .tar.gz (or stdout with -o -)",
		Long: "Export a snapshot as a gzip-compressed tar (a plain tar with --gzip=false) that GNU tar\n" +
			"extracts correctly (sparse files as PAX GNU.sparse 1.0). With -o - the archive streams to\n" +
			"stdout, e.g.\n  cocoon snapshot export s1 -o - | ssh host2 cocoon snapshot import --name s1",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := a.engine(engine.Options{})
			if err != nil {
				return err
			}
			if output == "-" {
				_, err := e.ExportSnapshot(cmd.Context(), args[0], a.stdout, gzip)
				return err
			}
			s, err := e.InspectSnapshot(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if output == "" {
				output = s.Name + ".tar"
				if gzip {
					output += ".gz"
				}
			}
			return writeFileAtomic(output, func(w io.Writer) error {
				_, err := e.ExportSnapshot(cmd.Context(), s.ID, w, gzip)
				return err
			})
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output file, - for stdout (default <name>.tar.gz, or <name>.tar with --gzip=false)")
	cmd.Flags().BoolVar(&gzip, "gzip", true, "gzip-compress the archive (--gzip=false: plain tar)")
	return cmd
}

// writeFileAtomic writes through a temp file in the target's directory, so a failed export
// never leaves a partial archive under the final name.
func writeFileAtomic(path string, write func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".partial-*")
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) //nolint:errcheck // gone after the rename
	if err := write(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func (a *app) snapshotImport() *cobra.Command {
	var o engine.SaveOptions
	cmd := &cobra.Command{
		Use:   "import [flags] [FILE]",
		Short: "Import a snapshot archive (.tar.gz or .tar) from FILE or stdin",
		Long: "Import a snapshot archive (.tar.gz or .tar) from FILE or stdin. Import only archives you trust: a clone loads\n" +
			"their device state into the hypervisor. Import checks file names, the manifest, every file's\n" +
			"digest, qcow2 references to host files and the device state header, and refuses the archive,\n" +
			"leaving nothing, when any check fails.",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := a.engine(engine.Options{})
			if err != nil {
				return err
			}
			var in io.Reader = a.stdin
			if len(args) == 1 && args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return fmt.Errorf("open archive: %w", err)
				}
				defer f.Close()
				in = f
			}
			s, err := e.ImportSnapshot(cmd.Context(), in, o)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "%s\t%s\n", s.ID, s.Name)
			return nil
		},
	}
	cmd.Flags().StringVar(&o.Name, "name", "", "snapshot name (default: the archive's name)")
	cmd.Flags().StringVar(&o.Description, "description", "", "snapshot description (default: the archive's)")
	return cmd
}
