/** Inline icons (no icon font or emoji: kiosks and headless browsers may lack those fonts). */
const base = { width: 18, height: 18, viewBox: "0 0 24 24", fill: "none", stroke: "currentColor",
  strokeWidth: 2, strokeLinecap: "round", strokeLinejoin: "round" } as const;

export const MicIcon = ({ off }: { off?: boolean }) => (
  <svg {...base} aria-hidden="true">
    <rect x="9" y="3" width="6" height="11" rx="3" />
    <path d="M5 11a7 7 0 0 0 14 0M12 18v3" />
    {off && <path d="M4 4l16 16" />}
  </svg>
);

export const SpeakerIcon = () => (
  <svg {...base} aria-hidden="true">
    <path d="M4 10v4h4l5 4V6L8 10H4z" />
    <path d="M16.5 8.5a5 5 0 0 1 0 7" />
  </svg>
);

export const SwapIcon = () => (
  <svg {...base} aria-hidden="true">
    <path d="M7 7h11l-3-3M17 17H6l3 3" />
  </svg>
);

export const UploadIcon = () => (
  <svg {...base} width={24} height={24} aria-hidden="true">
    <path d="M12 16V4M7 9l5-5 5 5M5 20h14" />
  </svg>
);

export const CameraIcon = () => (
  <svg {...base} width={24} height={24} aria-hidden="true">
    <path d="M4 8h3l2-3h6l2 3h3v11H4z" />
    <circle cx="12" cy="13" r="3.5" />
  </svg>
);

export const NoteIcon = () => (
  <svg {...base} width={24} height={24} aria-hidden="true">
    <path d="M9 18V5l11-2v13" />
    <circle cx="6" cy="18" r="3" />
    <circle cx="17" cy="16" r="3" />
  </svg>
);
