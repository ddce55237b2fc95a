; NSIS hooks for the tray app's installer (tauri.conf.json: bundle.windows.nsis.installerHooks).
;
; Uninstalling while this PC still holds data for other subscribers would lose their copies until
; the hub rebuilds them elsewhere. The uninstaller says so, and offers to stop so that the user
; can hand the data over first (Settings > "Stop lending storage", which shows the progress).

!macro NSIS_HOOK_PREUNINSTALL
  ; The vault lives in the app's data folder; an empty or missing one holds nothing.
  IfFileExists "$LOCALAPPDATA\surplus\.vault\*.*" surplus_holds_data surplus_nothing_held
  surplus_holds_data:
    MessageBox MB_YESNO|MB_ICONEXCLAMATION \
      "Surplus on this PC still holds backups of other subscribers.$\r$\n$\r$\n\
Uninstalling now deletes them, and the hub has to rebuild them from other PCs.$\r$\n\
To hand them over first, choose No, open Surplus, and turn off $\"Lend storage$\"; \
uninstall once it says nothing is held.$\r$\n$\r$\nUninstall anyway?" \
      /SD IDYES IDYES surplus_nothing_held
    Abort "Uninstall stopped: hand over what Surplus holds first, then uninstall again."
  surplus_nothing_held:
!macroend

!macro NSIS_HOOK_POSTUNINSTALL
  ; The per-user autostart entry the app wrote, if it did.
  DeleteRegValue HKCU "Software\Microsoft\Windows\CurrentVersion\Run" "Surplus"
!macroend
