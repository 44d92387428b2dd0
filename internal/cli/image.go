package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	units "github.com/docker/go-units"
	"github.com/spf13/cobra"

	"github.com/cocoonstack/cocoon/internal/engine"
	"github.com/cocoonstack/cocoon/internal/platform"
	"github.com/cocoonstack/cocoon/internal/view"
)

func (a *app) imageCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "image", Short: "Pull, import, list, inspect and remove images"}
	cmd.AddCommand(a.imagePull(), a.imageImport(), a.imageList(), a.imageInspect(), a.imageRm())
	return cmd
}

func (a *app) imagePull() *cobra.Command {
	var force, insecure bool
	var plat string
	cmd := &cobra.Command{
		Use:   "pull [--force] [--platform linux/arm64] IMAGE [IMAGE...]",
		Short: "Pull OCI image(s) or cloud image URL(s) (--force to bypass the cache)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := platform.Parse(plat)
			if err != nil {
				return err
			}
			e, err := a.engine(engine.Options{Progress: os.Stderr, Insecure: insecure})
			if err != nil {
				return err
			}
			for _, ref := range args {
				start := time.Now()
				img, stats, err := e.PullImage(cmd.Context(), ref, p, force)
				if err != nil {
					return fmt.Errorf("pull %s: %w", ref, err)
				}
				slog.Info("pulled", "image", img.Ref, "digest", img.Digest, "layers_converted", stats.Converted,
					"layers_reused", stats.Reused, "seconds", time.Since(start).Round(time.Millisecond).Seconds())
				fmt.Fprintln(a.stdout, img.Ref)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "pull and convert again even when cached")
	cmd.Flags().BoolVar(&insecure, "insecure", false, "allow plain-HTTP registries (loopback registries always may)")
	cmd.Flags().StringVar(&plat, "platform", "", "OCI platform to pull from a manifest list: linux/amd64 or linux/arm64 (default: the host's)")
	return cmd
}

func (a *app) imageImport() *cobra.Command {
	return &cobra.Command{
		Use:   "import NAME [FILE...]",
		Short: "Import an image (qcow2, raw, OCI/docker tar; gzip ok) from file(s) or stdin",
		Long: "Import an image from files, or from stdin when no file is given. qcow2, raw disk images and\n" +
			"OCI/docker image tars are detected by magic bytes, gzip-wrapped or not; a raw disk must start\n" +
			"with a partition table (MBR, GPT) or a filesystem (ext4, xfs, btrfs, vfat, iso9660…); anything\n" +
			"else is refused. Several tar files are one root filesystem layer each, bottom first (as the\n" +
			"original); other files are parts of one file (e.g. a split qcow2), concatenated in order.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := a.engine(engine.Options{Progress: os.Stderr})
			if err != nil {
				return err
			}
			img, err := e.ImportImage(cmd.Context(), args[0], args[1:], a.stdin)
			if err != nil {
				return err // already names the import
			}
			fmt.Fprintln(a.stdout, img.Ref)
			return nil
		},
	}
}

func (a *app) imageList() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List locally stored images",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFormat(format); err != nil {
				return err
			}
			e, err := a.engine(engine.Options{})
			if err != nil {
				return err
			}
			imgs, err := e.ListImages(cmd.Context())
			if err != nil {
				return err
			}
			if format == "json" {
				return printJSON(a.stdout, view.ImagesOf(imgs))
			}
			if len(imgs) == 0 {
				fmt.Fprintln(a.stdout, "No images found.")
				return nil
			}
			rows := make([][]string, 0, len(imgs))
			for _, i := range imgs {
				rows = append(rows, []string{string(i.Kind), i.Ref, short(i.Digest, 19), units.HumanSize(float64(i.Size)),
					i.CreatedAt.Local().Format("2006-01-02 15:04:05")})
			}
			return printTable(a.stdout, []string{"TYPE", "NAME", "DIGEST", "SIZE", "CREATED"}, rows)
		},
	}
	cmd.Flags().StringVarP(&format, "format", "o", "table", "output format: table or json")
	return cmd
}

func (a *app) imageInspect() *cobra.Command {
	return a.inspectCommand("inspect IMAGE", "Show detailed image info (JSON)", func(ctx context.Context, e *engine.Engine, ref string) (any, error) {
		img, err := e.InspectImage(ctx, ref)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", ref, err)
		}
		return view.ImageOf(img), nil
	})
}

func (a *app) imageRm() *cobra.Command {
	return a.removeCommand("rm ID [ID...]", "Delete locally stored image(s); blobs in use stay until gc",
		func(ctx context.Context, e *engine.Engine, refs []string) ([]string, error) {
			return e.RemoveImages(ctx, refs)
		})
}

func short(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
